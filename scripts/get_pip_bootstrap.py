"""Stand-in for the pip bootstrap script ansible-test downloads into each test environment
(`~/.ansible/test/cache/get_pip_<version>.py`): its download host is not reachable from these
machines. The same job from what is: pip from Python's own ensurepip, then the packages
ansible-test asks for (the pinned pip, setuptools ...) from the package index."""

import ensurepip
import os
import subprocess
import sys

# get-pip's own flags: what not to install besides pip (ensurepip brings no wheel, and a
# setuptools the environment may keep).
OWN_FLAGS = {"--no-setuptools", "--no-wheel"}

# ensurepip discards pip's configuration in this process's environment (PIP_CONFIG_FILE set to
# /dev/null): the install from the index runs with the environment as it was given.
environment = dict(os.environ)
ensurepip.bootstrap(upgrade=True)
packages = [arg for arg in sys.argv[1:] if arg not in OWN_FLAGS]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "-q", *packages], env=environment))
