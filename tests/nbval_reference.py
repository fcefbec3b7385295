"""pytest plugin for strict nbval over the chapters: the reference numerics, and what to compare.

Loaded with ``-p nbval_reference`` (``tests/`` on ``PYTHONPATH``), as ``make test`` does.

* It puts :data:`normlab.reference_numerics.ENV` into the environment before nbval starts any
  kernel (a variable already set by the caller is left alone, so a deliberate change shows).
* ``--cpu-knobs`` also sets :data:`normlab.reference_numerics.KNOBS` -- lower MKL and oneDNN
  instruction sets, other thread variables, glibc hwcaps -- which must not change a single
  byte of output under the pin; ``make test`` runs the training-heaviest chapters that way.
* On the reference numerics every cell is compared byte for byte, as plain strict nbval does.
  Outside it (arm64, x86-64 without AVX2, another PyTorch) every cell still runs and every
  ``assert`` still has to hold, every deterministic output is still compared, but the printed
  numbers of cells tagged ``depends-on-numerics`` are not: the header says so in one line and
  the summary lists each cell that was not compared, and why. The one-line notice that
  :func:`normlab.training.reproducible` prints off the reference is not compared either.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from normlab import reference_numerics as rn

TAG = "depends-on-numerics"
_NOT_COMPARED = "not-compared"

for _name, _value in rn.ENV.items():
    os.environ.setdefault(_name, _value)


def pytest_addoption(parser):
    parser.addoption("--cpu-knobs", action="store_true",
                     help="run the kernels with CPU-dependent settings changed "
                          "(normlab.reference_numerics.KNOBS); outputs must not change")


def pytest_configure(config):
    if config.getoption("--cpu-knobs"):
        os.environ.update(rn.KNOBS)


@lru_cache(maxsize=1)
def off_reference() -> list[str]:
    """What a kernel started now would find off the reference (run in a fresh interpreter,
    exactly as a notebook kernel starts: same environment, one thread, oneDNN off)."""
    res = subprocess.run([sys.executable, "-m", "normlab.reference_numerics"],
                         capture_output=True, text=True, env=os.environ.copy())
    if res.returncode == 0:
        return []
    return [res.stdout.strip().split(": no: ", 1)[-1] or res.stderr.strip()]


def pytest_report_header(config):
    return [_status(config), f"CPU: {cpu_model()}"] if config.getoption("--nbval") else None


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name, family and model numbers (from /proc/cpuinfo), so that a log
    says which CPU a cross-CPU comparison ran on."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
            if not line.strip():
                break
    except OSError:
        return platform.processor() or platform.machine()
    return (f"{fields.get('model name', '?')} (vendor {fields.get('vendor_id', '?')}, "
            f"family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})")


def _status(config) -> str:
    knobs = " (CPU knobs changed: " + " ".join(rn.KNOBS) + ")" if config.getoption(
        "--cpu-knobs") else ""
    off = off_reference()
    if not off:
        return f"reference numerics: yes, every cell compared byte for byte{knobs}"
    return (f"OUTSIDE the reference numerics ({off[0]}): cells tagged {TAG} run and their "
            f"asserts are checked, but their printed numbers are not compared{knobs}")


def _drop_notice(outputs):
    """The outputs without reproducible()'s off-reference notice line."""
    kept = []
    for out in outputs:
        if out.get("output_type") == "stream":
            lines = [ln for ln in out["text"].splitlines(keepends=True)
                     if not ln.startswith(rn.NOTICE_PREFIX)]
            if not lines:
                continue
            out = out.copy()
            out["text"] = "".join(lines)
        kept.append(out)
    return kept


def pytest_collection_modifyitems(config, items):
    off = off_reference() if config.getoption("--nbval") else []
    if not off:
        return
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None or not hasattr(item, "compare_outputs"):
            continue
        original = item.compare_outputs
        item.compare_outputs = (lambda test, ref, skip_compare=None, _orig=original:
                                _orig(_drop_notice(test), ref, skip_compare))
        if TAG in cell.metadata.get("tags", []) and item.options.get("check", True):
            item.options["check"] = False
            item.user_properties.append((_NOT_COMPARED, f"tagged {TAG}; {off[0]}"))


_not_compared: list[str] = []
_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if report.when in ("setup", "call") and ".ipynb" in report.nodeid:
        # per notebook: its cells' execution (and, in setup, the kernel's start)
        notebook = report.nodeid.split("::")[0]
        _seconds[notebook] = _seconds.get(notebook, 0.0) + report.duration
    if report.when == "call":
        for key, why in report.user_properties:
            if key == _NOT_COMPARED:
                _not_compared.append(f"{report.nodeid}: {why}")


def pytest_terminal_summary(terminalreporter, config):
    if config.getoption("--nbval"):
        terminalreporter.write_line(_status(config))
    if _seconds:
        terminalreporter.section("chapter execution times (kernel start + cells)")
        for notebook, seconds in sorted(_seconds.items()):
            terminalreporter.write_line(f"{seconds:6.1f} s  {notebook}")
    if _not_compared:
        terminalreporter.section("outputs not compared (outside the reference numerics)")
        for line in _not_compared:
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"{len(_not_compared)} cells ran and passed their asserts "
                                    f"but their printed numbers were not compared")
