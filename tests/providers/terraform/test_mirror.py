"""Finding providers in filesystem mirrors and writing the offline CLI config."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.terraform import mirror


def _unpacked(root: Path, source: str, version: str, target: str = "linux_amd64") -> None:
    (root / source / version / target).mkdir(parents=True)


def test_standard_locations_follow_terraforms_own_search_order() -> None:
    dirs = mirror.standard_plugin_dirs({"HOME": "/home/u", "XDG_DATA_HOME": "/data", "XDG_DATA_DIRS": "/a:/b"})

    assert dirs == [Path("/home/u/.terraform.d/plugins"), Path("/data/terraform/plugins"),
                    Path("/a/terraform/plugins"), Path("/b/terraform/plugins")]


def test_configured_roots_come_before_the_standard_ones_without_duplicates() -> None:
    env = {"HOME": "/home/u"}
    dirs = mirror.plugin_dirs(["/mirror", "/home/u/.terraform.d/plugins"], env)

    assert dirs[:2] == [Path("/mirror"), Path("/home/u/.terraform.d/plugins")]
    assert len(dirs) == len(set(dirs))


def test_unpacked_and_packed_providers_are_found_for_this_platform_only(tmp_path: Path) -> None:
    _unpacked(tmp_path, "registry.terraform.io/hashicorp/aws", "5.100.0")
    _unpacked(tmp_path, "registry.terraform.io/hashicorp/null", "3.2.0", target="darwin_arm64")
    packed = tmp_path / "registry.terraform.io" / "hashicorp" / "random"
    packed.mkdir(parents=True)
    (packed / "terraform-provider-random_3.6.0_linux_amd64.zip").write_bytes(b"")

    found = mirror.discover([tmp_path], "linux_amd64")

    assert sorted((p.source, p.version) for p in found) == [
        ("registry.terraform.io/hashicorp/aws", "5.100.0"), ("registry.terraform.io/hashicorp/random", "3.6.0")]


def test_a_machine_search_finds_mirror_roots_but_not_hidden_deep_or_foreign_ones(tmp_path: Path) -> None:
    here = mirror.current_target()
    _unpacked(tmp_path / "opt" / "tf-plugins" / "registry.terraform.io" / "hashicorp", "aws", f"5.0.0/{here}")
    _unpacked(tmp_path / "srv" / "a" / "b" / "registry.terraform.io" / "hashicorp", "null", f"3.2.0/{here}")
    _unpacked(tmp_path / "work" / ".cache" / "registry.terraform.io" / "hashicorp", "aws", f"5.0.0/{here}")
    _unpacked(tmp_path / "tmp" / "m" / "registry.terraform.io" / "hashicorp", "aws", f"5.0.0/{here}")
    _unpacked(tmp_path / "other" / "registry.terraform.io" / "hashicorp", "aws", "5.0.0/plan9_mips")
    _unpacked(tmp_path / "d1" / "d2" / "d3" / "d4" / "registry.terraform.io" / "hashicorp", "aws", f"5.0.0/{here}")

    assert mirror.find_mirror_roots(tmp_path, max_depth=3) == [tmp_path / "opt" / "tf-plugins",
                                                               tmp_path / "srv" / "a" / "b"]


def test_required_providers_are_read_from_the_module(tmp_path: Path) -> None:
    (tmp_path / "versions.tf").write_text("""
        terraform {
          required_providers {
            aws = { source = "hashicorp/aws", version = "~> 5.100" }
            thing = {
              source = "example.com/acme/thing"
            }
          }
        }
        module "x" { source = "./not-a-provider" }
    """)

    assert mirror.required_sources(tmp_path) == ["example.com/acme/thing", "registry.terraform.io/hashicorp/aws"]


def test_a_missing_provider_is_named_with_every_directory_searched(tmp_path: Path) -> None:
    roots = [tmp_path / "one", tmp_path / "two"]

    with pytest.raises(mirror.ProviderNotFound) as raised:
        mirror.check_available(["registry.terraform.io/hashicorp/aws"], roots, "linux_amd64")

    assert "registry.terraform.io/hashicorp/aws" in str(raised.value)
    assert f"{roots[0]}, {roots[1]}" in str(raised.value)


@pytest.mark.parametrize(
    ("offline", "has_direct"),
    [pytest.param(True, False, id="offline-mirror-only"), pytest.param(False, True, id="registry-fallback")],
)
def test_the_cli_config_uses_only_mirrors_that_hold_providers(tmp_path: Path, offline: bool, has_direct: bool) -> None:
    _unpacked(tmp_path / "full", "registry.terraform.io/hashicorp/aws", "5.100.0", mirror.current_target())
    (tmp_path / "empty").mkdir()

    text = mirror.cli_config([tmp_path / "empty", tmp_path / "full"], offline=offline)

    assert f'path    = "{tmp_path / "full"}"' in text
    assert str(tmp_path / "empty") not in text
    assert 'include = ["registry.terraform.io/hashicorp/aws"]' in text
    assert ("direct {" in text) is has_direct
