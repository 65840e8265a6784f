"""Nothing a user types changes what the script means.

Hypothesis fuzzes every form field. Whatever it sends is either refused with an error naming a field,
or rendered so that (1) every line outside the user's own ``export NAME=...`` lines is exactly what a
harmless choice renders, and (2) bash, running those export lines, sets exactly the values typed.
"""

from __future__ import annotations

import shlex
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pw_spawner.apps import jupyter_launch
from pw_spawner.form import options_from_form
from pw_spawner.options import OptionsError, validate_options
from pw_spawner.profiles import ProfileError, build_profiles
from pw_spawner.scripts import ScriptRequest, render_script

PROFILES = build_profiles([{
    "slug": "p", "display_name": "P", "default": True,
    "job": {"partition": "short", "cores": 2, "memory": "4G", "hours": 2},
    "overrides": {"hours": {"max": 8}, "cores": {"choices": [1, 2, 4]}, "memory": {"max": "16G"},
                  "gpus": {"max": 2}},
    "environments": [{"slug": "e1", "modules": ["python/3"]},
                     {"slug": "e2", "activate": "source /x/activate"}],
}])

# Text with everything that is dangerous in a shell or a directive: quotes, $(), backticks,
# newlines, directive prefixes, NUL, unicode.
_pieces = st.sampled_from([*"abc XYZ_=-'\"`$(){};|&<>\\\n\r\t#!*?~\x00é€",
                          "#SBATCH --x", "#PBS -l", "$(reboot)", "'; rm -rf / #"])
nasty = st.lists(_pieces, max_size=12).map("".join)


def field(*good: str):
    """Mostly values the profile accepts (so rendering is exercised), sometimes anything at all."""
    return st.one_of(st.sampled_from(["", *good]), st.sampled_from(["", *good]), nasty)


def _render(selection) -> str:
    return render_script(ScriptRequest(
        selection=selection, scheduler="slurm", job_name="pw-alice", job_dir="/home/alice/jobs/pw-alice",
        app=jupyter_launch(["jupyterhub-singleuser"], []), hub_env={"JUPYTERHUB_API_TOKEN": "t"}))


def _baseline(selection) -> str:
    """The same choice with no user variables: what every other line must stay."""
    from dataclasses import replace
    return _render(replace(selection, env={}))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=field("p"), environment=field("e1", "e2"), app=field("jupyter"), hours=field("1", "8", "9"),
       cores=field("1", "4", "3"), memory=field("16G", "1G", "17G"), gpus=field("0", "2", "3"),
       logging=st.sampled_from(["on", "", "off", "x"]),
       env_text=st.lists(st.tuples(st.from_regex(r"[A-Z_]{1,4}", fullmatch=True) | nasty, nasty), max_size=4))
def test_form_fields_never_change_the_script(profile, environment, app, hours, cores, memory, gpus,
                                             logging, env_text):
    formdata = {"profile": [profile], f"environment--{profile}": [environment], f"app--{profile}": [app],
                f"hours--{profile}": [hours], f"cores--{profile}": [cores], f"memory--{profile}": [memory],
                f"gpus--{profile}": [gpus], "logging": [logging],
                "env": ["\n".join(f"{k}={v}" for k, v in env_text)]}
    try:
        selection = validate_options(PROFILES, options_from_form(formdata))
    except OptionsError as exc:
        assert exc.field in ("profile", "environment", "app", "hours", "cores", "memory", "gpus", "env")
        return
    script = _render(selection)
    user_lines = {f"export {name}={shlex.quote(value)}" for name, value in selection.env.items()}
    kept = [line for line in script.splitlines()
            if line not in user_lines and line != "# ---- environment variables from the spawn page"]
    expected = [line for line in _baseline(selection).splitlines()
                if line != "# ---- environment variables from the spawn page"]
    assert [line for line in kept if line] == [line for line in expected if line]
    # Directives are fixed by the profile and validated numbers.
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert all(line.startswith("#SBATCH --") and "\n" not in line for line in directives)
    assert len(directives) == len([line for line in _baseline(selection).splitlines()
                                   if line.startswith("#SBATCH")])


@settings(max_examples=60, deadline=None)
@given(env=st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
                           st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=30)
                           | nasty.filter(lambda s: not any(c in s for c in "\n\r\x00")),
                           max_size=4))
def test_bash_sees_exactly_the_typed_values(env):
    try:
        selection = validate_options(PROFILES, {"env": env})
    except OptionsError as exc:
        assert exc.field == "env"
        return
    exports = [line for line in _render(selection).splitlines()
               if line.startswith("export ") and not line.startswith("export JUPYTERHUB_")]
    program = "\n".join([*exports, *(f'printf "%s\\0" "${{{name}}}"' for name in selection.env)])
    out = subprocess.run(["bash", "-c", program], capture_output=True, env={"PATH": "/usr/bin:/bin"},
                         check=True).stdout.decode("utf-8", "surrogateescape")
    assert out.split("\0")[:-1] == list(selection.env.values())


def test_admin_free_text_cannot_leave_a_comment_line(tmp_path):
    """Display names are refused with a newline at load; what reaches a script goes through `comment`."""
    from dataclasses import replace

    from pw_spawner.profiles import Environment

    sneaky = "CUDA\nrm -rf ~\u2028#SBATCH --x"
    selection = validate_options(PROFILES, {"environment": "e1"})
    # Objects made in code without validation skip the loader's checks; the template must hold anyway.
    selection = replace(selection,
                        environment=Environment.model_construct(slug="e1", display_name=sneaky,
                                                                modules=("python/3",)),
                        profile=selection.profile.model_copy(
                            update={"description": "Line one.\n$(reboot)\nLine three."}))
    template = tmp_path / "job.sh.j2"
    template.write_text("#!/bin/bash\n# {{ selection.profile.description | comment }}\n"
                        "# {{ selection.environment.display_name | comment }}\n")
    for dirs in ((), (str(tmp_path),)):
        script = render_script(ScriptRequest(
            selection=selection, scheduler="slurm", job_name="pw-alice", job_dir="/home/alice/jobs/pw-alice",
            app=jupyter_launch(["jupyterhub-singleuser"], [])), dirs)
        assert not any(line.startswith(("rm ", "$(reboot)", "#SBATCH --x")) for line in script.splitlines())
        assert "\u2028" not in script
    assert script.splitlines()[1:] == ["# Line one. $(reboot) Line three.", "# CUDA rm -rf ~ #SBATCH --x"]


def test_rest_env_name_with_a_trailing_newline_is_refused():
    # `$` in a pattern also matches before a final newline: "A\n" once passed as a name and
    # rendered `export A` plus a line of its own.
    with pytest.raises(OptionsError) as info:
        validate_options(PROFILES, {"env": {"A\n": "x"}})
    assert info.value.field == "env"


@pytest.mark.parametrize("profile", [
    {"slug": "a\n"},
    {"slug": "a", "job": {"extra_directives": ["--constraint=x\n"]}},
    {"slug": "a", "environments": [{"slug": "e", "activate": "source x\n"}]},
])
def test_admin_values_with_a_trailing_newline_are_refused(profile):
    with pytest.raises(ProfileError):
        build_profiles([profile])
