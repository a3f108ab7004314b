"""HTTP, both ways: what the functions accept and answer (inbound, answers), and every call
they make to a system outside ours (outbound)."""
