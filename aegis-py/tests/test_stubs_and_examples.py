"""The stubs match the native module; the examples run; a built wheel installs and imports."""

import os
import subprocess
import sys
import venv

import pytest

from conftest import EXAMPLES, ROOT


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=600, **kw)


def test_stubs_match_the_native_module() -> None:
    out = run([sys.executable, "-m", "mypy.stubtest", "aegis._native"])
    assert out.returncode == 0, out.stdout + out.stderr


def test_package_type_checks() -> None:
    out = run([sys.executable, "-m", "mypy", "--strict", "--ignore-missing-imports", "-p", "aegis"])
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("script,marker", [
    ("payments.py", "payments story: ok"),
    ("langchain_agent.py", "langchain agent: ok"),
    ("mcp_client.py", "mcp client: ok"),
    ("mcp_server_guard.py", "mcp server guard: ok"),
    ("adk_agent.py", "adk agent: ok"),
    ("openai_agents_agent.py", "openai agents: ok"),
    ("langgraph_supervisor.py", "langgraph supervisor: ok"),
])
def test_example_runs(script: str, marker: str) -> None:
    out = run([sys.executable, str(EXAMPLES / script)], cwd=EXAMPLES)
    assert out.returncode == 0 and marker in out.stdout, out.stdout + out.stderr


def test_wheel_installs_into_a_fresh_venv(tmp_path) -> None:
    dist = tmp_path / "dist"
    maturin = os.path.join(os.path.dirname(sys.executable), "maturin")
    out = run([maturin, "build", "--profile", "dev", "--out", str(dist)], cwd=ROOT / "aegis-py")
    assert out.returncode == 0, out.stdout + out.stderr
    wheels = list(dist.glob("aegis_sod-*.whl"))
    assert len(wheels) == 1
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    out = run([str(python), "-m", "pip", "install", "--no-index", "--no-deps", str(wheels[0])])
    assert out.returncode == 0, out.stdout + out.stderr
    code = ("import aegis, pathlib; k = aegis.KeyPair.from_seed(bytes(32)); print(k.kid); "
            "print(pathlib.Path(aegis.__file__).with_name('py.typed').exists())")
    out = run([str(python), "-c", code], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [aegis_kid_of_zero_seed(), "True"]


def aegis_kid_of_zero_seed() -> str:
    import aegis
    return aegis.KeyPair.from_seed(bytes(32)).kid


def test_benchmark_script_runs() -> None:
    out = run([sys.executable, str(ROOT / "aegis-py" / "bench" / "bench_authorize.py"), "50"])
    assert out.returncode == 0 and "ratio:" in out.stdout, out.stdout + out.stderr
