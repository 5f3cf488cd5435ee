"""Plugin discovery: broken plugins are isolated, name clashes are explained, env switches work."""

from __future__ import annotations

import json

import pytest
from core_fixtures import (  # noqa: F401
    encoder_module,
    fake_distribution,
    fk_env,
    run_cli,
    small_recipe,
    with_pythonpath,
    write_recipe,
)

BROKEN = "raise RuntimeError('kaboom: this plugin is broken on purpose')\n"


@pytest.fixture
def broken_site(tmp_path):
    return fake_distribution(tmp_path / "site", "fk-broken-plugin", {"encoder": {"kaputt": "fk_kaputt"}},
                             {"fk_kaputt": BROKEN})


def rows_by_name(stdout: str) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(stdout)}


def test_broken_plugin_is_listed_not_fatal(broken_site, tmp_path):
    env = with_pythonpath(broken_site, {"FUSIONKIT_CACHE_DIR": str(tmp_path / "cache")})
    proc = run_cli(["plugins", "list"], env)
    assert proc.returncode == 0, proc.stderr
    (line,) = [l for l in proc.stdout.splitlines() if "kaputt" in l]
    assert "broken" in line and "fk-broken-plugin" in line and "RuntimeError: kaboom" in line
    assert "lld" in proc.stdout  # the healthy plugins are still there
    rows = rows_by_name(run_cli(["plugins", "list", "--json"], env).stdout)
    assert rows["kaputt"]["status"] == "broken"
    assert rows["kaputt"]["distribution"] == "fk-broken-plugin"
    assert rows["kaputt"]["entry_point"] == "fk_kaputt"
    assert rows["lld"]["status"] == "installed"


def test_run_without_the_broken_plugin_works(broken_site, tmp_path):
    # a healthy third-party encoder next to the broken one (numpy only: no librosa start-up in the subprocess)
    fake_distribution(broken_site, "fk-healthy", {"encoder": {"quick": "fk_quick"}},
                      {"fk_quick": encoder_module("quick")})
    env = with_pythonpath(broken_site, {"FUSIONKIT_CACHE_DIR": str(tmp_path / "cache")})
    recipe = write_recipe(tmp_path / "r.yaml", small_recipe(encoders=[{"plugin": "quick"}]))
    proc = run_cli(["run", str(recipe), "--out", str(tmp_path / "run")], env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["n_clips"] == 32
    # a recipe that does use it gets one line saying why it cannot
    bad = write_recipe(tmp_path / "bad.yaml", small_recipe(encoders=[{"plugin": "kaputt"}]))
    proc = run_cli(["validate", str(bad)], env)
    assert proc.returncode == 2
    expected = "encoders.0.plugin: encoder plugin 'kaputt' (from fk-broken-plugin) is broken: RuntimeError: kaboom"
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_same_name_from_two_distributions_is_listed_and_refused_by_name(tmp_path):
    site = tmp_path / "site"
    fake_distribution(site, "fk-twin-a", {"encoder": {"twin": "fk_twin_a"}}, {"fk_twin_a": encoder_module("twin")})
    fake_distribution(site, "fk-twin-b", {"encoder": {"twin": "fk_twin_b"}}, {"fk_twin_b": encoder_module("twin")})
    env = with_pythonpath(site, {"FUSIONKIT_CACHE_DIR": str(tmp_path / "cache")})
    proc = run_cli(["plugins", "list"], env)
    assert proc.returncode == 0, proc.stderr  # the clash does not stop other commands
    (line, *_) = [l for l in proc.stdout.splitlines() if " twin " in l]
    assert "name clash" in line and "2 encoder plugins are named 'twin'" in line
    assert "'fk-twin-a' (fk_twin_a)" in line and "'fk-twin-b' (fk_twin_b)" in line
    bad = write_recipe(tmp_path / "bad.yaml", small_recipe(encoders=[{"plugin": "twin"}]))
    proc = run_cli(["validate", str(bad)], env)
    assert proc.returncode == 2 and "2 encoder plugins are named 'twin'" in proc.stderr
    assert "Traceback" not in proc.stderr
    # the way out the message offers: block one copy by distribution
    proc = run_cli(["plugins", "list", "--json"], {**env, "FUSIONKIT_BLOCK_PLUGINS": "fk-twin-b:twin"})
    assert proc.returncode == 0, proc.stderr
    twins = [r for r in json.loads(proc.stdout) if r["name"] == "twin"]
    assert {(r["distribution"], r["status"]) for r in twins} == {("fk-twin-a", "installed"), ("fk-twin-b", "blocked")}


def test_clash_with_a_builtin_keeps_the_builtin(tmp_path, monkeypatch, fk_env):
    from fusionkit.registry import build_registry

    site = fake_distribution(tmp_path / "site", "fk-imposter", {"encoder": {"lld": "fk_imposter"}},
                             {"fk_imposter": encoder_module("lld")})
    monkeypatch.syspath_prepend(str(site))
    reg = build_registry()
    assert reg.plugins[("encoder", "lld")].distribution == "fusionkit"
    (problem,) = [p for p in reg.problems if p.name == "lld"]
    assert (problem.status, problem.distribution) == ("name clash", "fk-imposter")


def test_autoload_switch_hides_third_party_plugins(tmp_path, monkeypatch, fk_env):
    from fusionkit.registry import build_registry

    site = fake_distribution(tmp_path / "site", "fk-extra", {"encoder": {"extra-enc": "fk_extra"}},
                             {"fk_extra": encoder_module("extra-enc")})
    monkeypatch.syspath_prepend(str(site))
    assert "extra-enc" in build_registry().names("encoder")
    monkeypatch.setenv("FUSIONKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    reg = build_registry()
    assert "extra-enc" not in reg.names("encoder")
    assert "example-energy" not in reg.names("encoder")
    assert {"lld", "xgboost", "synthetic"} <= {p.name for p in reg.all()}
    assert all(p.distribution == "fusionkit" for p in reg.all())
    for off in ("0", "false", "False", "no", ""):
        monkeypatch.setenv("FUSIONKIT_DISABLE_PLUGIN_AUTOLOAD", off)
        assert "extra-enc" in build_registry().names("encoder"), off


def test_block_switch_blocks_one_plugin(tmp_path, monkeypatch, fk_env):
    from fusionkit.registry import PluginError, build_registry

    site = fake_distribution(tmp_path / "site", "fk-extra", {"encoder": {"extra-enc": "fk_extra"}},
                             {"fk_extra": encoder_module("extra-enc")})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("FUSIONKIT_BLOCK_PLUGINS", " extra-enc , ")
    reg = build_registry()
    assert "extra-enc" not in reg.names("encoder")
    assert "lld" in reg.names("encoder")
    (blocked,) = [p for p in reg.all() if p.name == "extra-enc"]
    assert blocked.status == "blocked" and "FUSIONKIT_BLOCK_PLUGINS" in blocked.reason
    with pytest.raises(PluginError, match="'extra-enc' .* is blocked"):
        reg.get("encoder", "extra-enc")
    monkeypatch.setenv("FUSIONKIT_BLOCK_PLUGINS", "lld")  # built-ins can be blocked too
    assert "lld" not in build_registry().names("encoder")


def test_a_block_naming_no_plugin_is_warned_about(monkeypatch, fk_env, caplog):
    from fusionkit.registry import build_registry

    monkeypatch.setenv("FUSIONKIT_BLOCK_PLUGINS", "lld,xgbost")
    reg = build_registry()
    assert "lld" not in reg.names("encoder") and "xgboost" in reg.names("fusion")
    assert "FUSIONKIT_BLOCK_PLUGINS names xgbost, which no installed plugin or entry point is called" in caplog.text
    assert "lld," not in caplog.text


def test_bad_registrations_are_broken_not_fatal(tmp_path, monkeypatch, fk_env):
    from fusionkit.registry import build_registry

    not_an_encoder = """
        from fusionkit.sdk import hookimpl

        class Thing:
            name = "thing"

        @hookimpl
        def register_encoders(register):
            register(Thing)
    """
    needs_missing = encoder_module("needy").replace('description = "a test encoder"',
                                                    'description = "x"\n        requires = ("fk_no_such_module_xyz",)')
    site = fake_distribution(tmp_path / "site", "fk-odd", {"encoder": {"thing": "fk_thing", "needy": "fk_needy"}},
                             {"fk_thing": not_an_encoder, "fk_needy": needs_missing})
    monkeypatch.syspath_prepend(str(site))
    reg = build_registry()
    by_name = {p.name: p for p in reg.all()}
    assert by_name["thing"].status == "broken"
    assert "Thing has no Options model" in by_name["thing"].reason
    assert by_name["needy"].status == "not installed"
    assert "needs fk_no_such_module_xyz" in by_name["needy"].reason
    assert "fk-odd" in by_name["needy"].reason  # third party: point at its distribution, not a fusionkit extra


def test_an_unknown_name_mentions_the_broken_entry_points_of_its_kind(tmp_path, monkeypatch, fk_env):
    """A class without Options breaks its entry point ('odd'), so its own name ('no-options') is unknown; the
    error says which entry point is broken and why, in one line."""
    from fusionkit.registry import PluginError, build_registry

    no_options = """
        from fusionkit.sdk import hookimpl

        class NoOptions:
            name = "no-options"

        @hookimpl
        def register_encoders(register):
            register(NoOptions)
    """
    site = fake_distribution(tmp_path / "site", "fk-odd", {"encoder": {"odd": "fk_odd"}}, {"fk_odd": no_options})
    monkeypatch.syspath_prepend(str(site))
    reg = build_registry()
    with pytest.raises(PluginError) as err:
        reg.get("encoder", "no-options")
    message = str(err.value)
    assert message.startswith("unknown encoder plugin 'no-options'") and "\n" not in message
    assert ("; the entry point 'odd' of package fk-odd is broken, and may be what provides it: register_encoders "
            "raised TypeError: NoOptions has no Options model") in message
    with pytest.raises(PluginError) as other_kind:
        reg.get("fusion", "no-options")
    assert "fk-odd" not in str(other_kind.value)  # only broken entry points of the kind asked for


def test_catalogued_but_missing_plugin_says_not_installed(fk_env):
    from fusionkit.registry import PluginError, Registry

    empty = Registry()
    with pytest.raises(PluginError, match="encoder plugin 'lld' is not installed"):
        empty.get("encoder", "lld")
    with pytest.raises(PluginError, match="unknown encoder plugin 'nope'"):
        empty.get("encoder", "nope")


def test_missing_requirement_of_a_builtin_names_its_extra(fk_env):
    from fusionkit.registry import PluginError, PluginInfo, Registry, _add
    from fusionkit.sdk.base import Encoder
    from fusionkit.sdk.base import Options as BaseOptions

    class NoSmile(Encoder):
        name = "egemaps"
        Options = BaseOptions
        requires = ("fk_no_such_opensmile",)

        def encode_batch(self, inputs):
            return []

    reg = Registry()
    _add(reg, set(), PluginInfo("egemaps", "encoder", NoSmile, "fusionkit", "fusionkit_plugins.egemaps"))
    with pytest.raises(PluginError) as err:
        reg.get("encoder", "egemaps")
    assert str(err.value) == ("encoder plugin 'egemaps' is not installed: needs fk_no_such_opensmile "
                              "(pip install 'fusionkit[egemaps]')")


def test_exit_on_import_and_bad_hook_signature_are_broken(tmp_path, monkeypatch, fk_env):
    from fusionkit.registry import build_registry

    bad_signature = """
        from fusionkit.sdk import hookimpl

        @hookimpl
        def register_encoders(reg, extra):
            pass
    """
    site = fake_distribution(tmp_path / "site", "fk-rude",
                             {"encoder": {"quitter": "fk_quitter", "wrongsig": "fk_wrongsig"}},
                             {"fk_quitter": "import sys\nsys.exit('no thanks')\n", "fk_wrongsig": bad_signature})
    monkeypatch.syspath_prepend(str(site))
    by_name = {p.name: p for p in build_registry().all()}
    assert by_name["quitter"].status == "broken" and "SystemExit: no thanks" in by_name["quitter"].reason
    assert by_name["wrongsig"].status == "broken" and "extra" in by_name["wrongsig"].reason
    assert by_name["lld"].status == "installed"


def test_a_raising_hook_is_its_own_plugins_problem(tmp_path, monkeypatch, fk_env):
    """Hooks run through the plugin manager one plugin at a time: the failure is attributed, the rest register."""
    from fusionkit.registry import build_registry

    raises_after_one = encoder_module("early") + """
    @hookimpl
    def register_fusions(register):
        raise ValueError("no heads today")
    """
    site = fake_distribution(tmp_path / "site", "fk-mixed",
                             {"encoder": {"early": "fk_early", "calm": "fk_calm"}},
                             {"fk_early": raises_after_one, "fk_calm": encoder_module("calm")})
    monkeypatch.syspath_prepend(str(site))
    reg = build_registry()
    assert {"early", "calm", "lld"} <= set(reg.names("encoder"))
    (problem,) = [p for p in reg.problems if p.status == "broken"]
    assert (problem.name, problem.distribution, problem.entry_point) == ("early", "fk-mixed", "fk_early")
    assert problem.reason == "register_fusions raised ValueError: no heads today"
    assert "linear" in reg.names("fusion")  # the built-in heads registered through the same hook


def test_a_hook_that_raises_leaves_nothing_of_its_call_registered(tmp_path, monkeypatch, fk_env):
    """Two classes registered, then a raise: neither is used, the built-in it clashed with has no clash, and a
    third-party plugin it clashed with is installed as before; the entry point is broken, naming what was dropped."""
    from fusionkit.registry import build_registry

    partial = """
        import numpy as np
        from fusionkit.sdk import hookimpl
        from fusionkit.sdk.base import Encoder

        def make(label):
            class Made(Encoder):
                name = label

                def encode_batch(self, inputs):
                    return [{"features": np.zeros(2, dtype=np.float32)} for _ in inputs]
            return Made

        @hookimpl
        def register_encoders(register):
            register(make("half-done"))
            register(make("lld"))         # the built-in's name
            register(make("twin"))        # the name of a healthy third-party plugin
            raise RuntimeError("third class failed")
    """
    site = fake_distribution(tmp_path / "site", "fk-partial", {"encoder": {"zz-partial": "fk_partial"}},
                             {"fk_partial": partial})
    fake_distribution(site, "fk-twin", {"encoder": {"twin": "fk_twin"}}, {"fk_twin": encoder_module("twin")})
    monkeypatch.syspath_prepend(str(site))
    reg = build_registry()
    assert "half-done" not in reg.names("encoder")
    assert reg.plugins[("encoder", "lld")].distribution == "fusionkit" and not reg.clashes
    twin = reg.plugins[("encoder", "twin")]
    assert (twin.distribution, twin.status, twin.reason) == ("fk-twin", "installed", "")
    assert reg.get("encoder", "twin") is twin.cls
    (problem,) = [p for p in reg.problems if p.distribution == "fk-partial"]
    assert (problem.name, problem.status) == ("zz-partial", "broken")
    assert problem.reason == ("register_encoders raised RuntimeError: third class failed; not used: 'half-done', "
                              "'lld', 'twin', which it registered before raising")
    assert not [p for p in reg.problems if p.status == "name clash"]


def test_the_registry_keeps_its_plugin_manager(fk_env):
    from fusionkit.registry import build_registry

    reg = build_registry()
    lld = reg.pm.get_plugin("fusionkit:fusionkit.encoders:lld")
    assert lld is not None and lld.__name__ == "fusionkit_plugins.lld"
    assert lld in {impl.plugin for impl in reg.pm.hook.register_encoders.get_hookimpls()}


def test_hooks_are_found_the_way_pluggy_finds_them(tmp_path, monkeypatch, fk_env):
    """A renamed hook implementation (``specname``) counts; so does an unmarked function named like a hook."""
    from fusionkit.registry import build_registry

    renamed = encoder_module("renamed").replace("@hookimpl\n    def register_encoders(register):",
                                                '@hookimpl(specname="register_encoders")\n    def offer(register):')
    unmarked = encoder_module("unmarked").replace("    @hookimpl\n", "")
    assert "def offer(" in renamed and "@hookimpl" not in unmarked
    site = fake_distribution(tmp_path / "site", "fk-styles",
                             {"encoder": {"renamed": "fk_renamed", "unmarked": "fk_unm"}},
                             {"fk_renamed": renamed, "fk_unm": unmarked})
    monkeypatch.syspath_prepend(str(site))
    reg = build_registry()
    assert {"renamed", "unmarked"} <= set(reg.names("encoder"))
    assert not reg.problems


def test_a_blocked_entry_point_is_never_imported(tmp_path, monkeypatch, fk_env):
    from fusionkit.registry import build_registry

    site = fake_distribution(tmp_path / "site", "fk-broken-plugin", {"encoder": {"kaputt": "fk_kaputt"}},
                             {"fk_kaputt": BROKEN})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("FUSIONKIT_BLOCK_PLUGINS", "fusionkit:kaputt")  # another distribution's: no effect
    (row,) = [p for p in build_registry().all() if p.name == "kaputt"]
    assert row.status == "broken"
    monkeypatch.setenv("FUSIONKIT_BLOCK_PLUGINS", "fk-broken-plugin:kaputt")
    (row,) = [p for p in build_registry().all() if p.name == "kaputt"]
    assert (row.status, row.reason, row.distribution) == ("blocked", "blocked by FUSIONKIT_BLOCK_PLUGINS",
                                                          "fk-broken-plugin")


def test_builtins_without_an_entry_point_are_listed_with_their_extra(fk_env):
    from fusionkit.registry import Registry, plugin_rows

    rows = {(r["kind"], r["name"]): r for r in plugin_rows(Registry())}
    assert {("encoder", "lld"), ("fusion", "linear"), ("dataset", "ravdess")} <= set(rows)
    assert all(r["status"] == "not installed" and r["origin"] == "built-in" for r in rows.values())
    assert rows[("encoder", "egemaps")]["reason"] == ("not found among installed entry points "
                                                      "(pip install 'fusionkit[egemaps]')")
    assert rows[("encoder", "lld")]["reason"] == "not found among installed entry points (reinstall fusionkit)"


def test_listing_takes_description_and_modality_from_the_class(fk_env):
    from fusionkit.registry import build_registry, plugin_rows
    from fusionkit_plugins.datasets.meld import Meld
    from fusionkit_plugins.hf_text import HFTextEncoder

    rows = {(r["kind"], r["name"]): r for r in plugin_rows(build_registry())}
    assert rows[("encoder", "hf-text")]["modality"] == "text" == HFTextEncoder.modality
    assert rows[("encoder", "hf-text")]["description"] == HFTextEncoder.description
    assert rows[("dataset", "meld")]["modality"] == "text+audio" == Meld.modality
    assert rows[("dataset", "ravdess")]["modality"] == "audio+text"
    assert rows[("fusion", "ridge")]["modality"] == rows[("fusion", "linear")]["modality"] == "any"
