"""The engine is pure Python: importing it loads no Django."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine_only

ROOT = Path(__file__).resolve().parents[2]


def test_it_imports_the_engine_without_django() -> None:
    code = (
        "import wfdash.workflow, wfdash.workflow.checkpointer, wfdash.workflow.graph, sys; "
        "assert not any(m == 'django' or m.startswith('django.') for m in sys.modules), "
        "sorted(m for m in sys.modules if m.split('.')[0] == 'django')"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
