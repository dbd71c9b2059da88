"""What a gate reads of the other boxes: the membership and the statuses it waits for.

``peers.PeerView`` serves the gate keeper; while a gate is shut it follows
one waited-for box at a time (``gate_follower``), so a box's connections to
Consul do not grow with the fleet.
"""
