"""LACP (IEEE 802.1AX): LACPDUs (pdu.py) and the per-bond state machines
(machine.py).  The bond (vswitch/bond.py) turns its configuration into
LacpSettings and feeds the machines its members' links and LACPDUs."""
