"""SSH connection layer for remote targets (docs/architecture.md, "Modules").

``sshcmd`` turns the ssh command line a GPU provider prints into an :class:`~.sshcmd.SSHSpec`;
``connection`` opens an authenticated, host-key-checked paramiko connection from it (honouring
``~/.ssh/config``); ``hostkeys`` is the known_hosts logic; ``channel`` moves bytes over exec
channels fast. Push and remote pull build on these.
"""

from . import lazy_invoke

lazy_invoke.install()  # before any submodule imports paramiko
