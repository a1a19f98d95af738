"""scripts/setup.sh chooses torch before anything else; checked with stand-in commands on PATH
(a fake `python` that logs its arguments, and optionally a fake `nvidia-smi`)."""
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$LOG"
if [ "$1" = "-c" ]; then
  case "$2" in
    "import torch") [ "${FAKE_HAS_TORCH:-0}" = 1 ] ;;
    *) echo "2.13.0 cpu" ;;
  esac
  exit $?
fi
if [ "$1 $2 $3" = "-m pip install" ] && [[ "$*" == *"--no-index"* ]]; then
  exit "${FAKE_NO_LOCAL_WHEEL:-0}"
fi
exit 0
"""


def run_setup(tmp_path, has_torch=False, gpu=False, local_wheel=True):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "python").chmod(0o755)
    if gpu:
        (bin_dir / "nvidia-smi").write_text("#!/usr/bin/env bash\necho 'GPU 0: H100'\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    log = tmp_path / "log"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log), "USE_ACTIVE_ENV": "1",
           "FAKE_HAS_TORCH": "1" if has_torch else "0",
           "FAKE_NO_LOCAL_WHEEL": "0" if local_wheel else "1", "HOME": str(tmp_path)}
    done = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    installs = [line for line in log.read_text().splitlines() if line.startswith("-m pip install")]
    return done.stdout, installs


def torch_installs(installs):
    return [line for line in installs if " torch" in line]


def test_cpu_machine_gets_the_pinned_cpu_build_from_a_local_wheel(tmp_path):
    out, installs = run_setup(tmp_path)
    assert torch_installs(installs) == ["-m pip install --quiet --no-index --no-deps torch==2.13.0"]
    assert installs[-1] == "-m pip install --quiet -e .[test]"


def test_cpu_machine_without_local_wheel_uses_the_cpu_only_index(tmp_path):
    _, installs = run_setup(tmp_path, local_wheel=False)
    assert torch_installs(installs)[-1] == ("-m pip install --quiet --no-deps torch==2.13.0 "
                                            "--index-url https://download.pytorch.org/whl/cpu")


def test_installed_torch_is_kept(tmp_path):
    out, installs = run_setup(tmp_path, has_torch=True, gpu=True)
    assert "keeping installed torch" in out
    assert torch_installs(installs) == []


def test_gpu_machine_gets_the_default_cuda_wheel(tmp_path):
    _, installs = run_setup(tmp_path, gpu=True)
    assert torch_installs(installs) == ["-m pip install --quiet torch>=2.4"]


@pytest.mark.skipif(not os.environ.get("CI"), reason="only meaningful on a clean CI checkout")
def test_ci_installed_the_cpu_build():
    import torch

    assert torch.__version__.startswith("2.13.0") and torch.version.cuda is None


def test_a_torch_inside_the_virtualenv_that_makes_the_venv_is_kept(tmp_path):
    """python3 on PATH is a virtualenv (an activated one; a GPU image's /opt/.../.venv) whose
    torch --system-site-packages cannot see: the new venv sees it through a .pth file."""
    import sys

    parent = tmp_path / "parent"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(parent)], check=True)
    site = subprocess.run([str(parent / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    torch_dir = Path(site) / "torch"  # a stand-in "CUDA build" in the parent's site-packages
    (torch_dir / "version").mkdir(parents=True)
    (torch_dir / "__init__.py").write_text("from torch import version\n__version__ = '9.9.9+cu999'\n")
    (torch_dir / "version" / "__init__.py").write_text("cuda = '99.9'\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": str(parent / "bin" / "python"),
           "VENV": str(tmp_path / "venv"), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)}
    # pip then fails offline on ligo's other requirements: what matters is the torch decision
    done = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert "sees its packages" in done.stdout, done.stdout + done.stderr
    assert "setup: keeping installed torch 9.9.9+cu999 cuda" in done.stdout, done.stdout + done.stderr
    seen = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), "-c",
                           "import torch; print(torch.__file__)"],
                          capture_output=True, text=True, check=True).stdout
    assert seen.startswith(site)
