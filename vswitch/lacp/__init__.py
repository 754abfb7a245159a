"""LACP (IEEE 802.1AX): LACPDUs (pdu.py), the per-bond state machines
(machine.py), and the configuration they come from (settings.py)."""
