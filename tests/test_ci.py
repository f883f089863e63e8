"""CI runs what the README tells users to run: .ci/run is the README's test command, and the GitHub workflow
runs .ci/run, then (on pull requests) the demo pipeline and posts its report with CML."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.conftest import ROOT


def readme_commands() -> list[str]:
    """The commands of the README's first code block (the two set-up commands), without comments."""
    block = re.search(r"```\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def test_readme_starts_with_the_main_job_and_the_test_command():
    assert readme_commands() == ["make demo", "make test"]


def test_ci_run_is_exactly_the_readme_test_command():
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[-1] == readme_commands()[1]
    assert (ROOT / ".ci" / "run").stat().st_mode & 0o111  # executable


def test_github_workflow_runs_the_tests_and_posts_the_demo_report():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    jobs = workflow["jobs"]
    test_steps = [step.get("run", "") for step in jobs["test"]["steps"]]
    assert ".ci/run" in test_steps
    pipeline = jobs["pipeline"]
    assert pipeline["permissions"]["pull-requests"] == "write"
    assert any(step.get("uses", "").startswith("iterative/setup-cml@") for step in pipeline["steps"])
    script = "\n".join(step.get("run", "") for step in pipeline["steps"])
    assert "make demo" in script and "demo/reports/report.md" in script
    assert "cml comment create" in script
    assert "REPO_TOKEN" in next(step for step in pipeline["steps"] if "cml comment" in step.get("run", ""))["env"]


def test_make_test_runs_with_onednn_on_unless_told_otherwise():
    """oneDNN on is the setting under which TensorFlow prints its start-up lines; CI (make test) runs under it, so
    the tests on what processes print hold on every CPU. `TF_ENABLE_ONEDNN_OPTS=0 make test` runs the other one."""
    recipe = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    pytest_lines = [line for line in recipe.splitlines() if "-m pytest" in line]
    assert len(pytest_lines) == 1
    assert pytest_lines[0].startswith("TF_ENABLE_ONEDNN_OPTS=${TF_ENABLE_ONEDNN_OPTS:-1} ")
    assert pytest_lines[0].endswith(" -m pytest -n 2")  # the whole suite, in two workers (Makefile: TEST_WORKERS)
