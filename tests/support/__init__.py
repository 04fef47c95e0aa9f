"""Helpers shared by the test suite: real QEMU and libvirt, installed and started on demand."""
