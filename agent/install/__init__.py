"""Installing the agent on a box: every file it needs besides the package and its config, made from the config.

``maintenance-agent install-files --config FILE --root /`` writes them (``files``):
the agent's unit and its drop-ins, the sysusers file, the polkit rule for
exactly the configured units (``polkit``), the hold drop-ins that keep a held
unit or supervisor program from starting (``holds``), and the edge's initial
map file. Run as root once per box, and again whenever the config's units
change. Never imported by the daemon or by maintctl.
"""
