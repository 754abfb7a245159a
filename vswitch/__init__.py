"""vswitch: a userspace virtual Ethernet switch for Linux network namespaces."""
__version__ = "0.1.0"
