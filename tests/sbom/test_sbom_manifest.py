"""Reading and validating the TOML component manifest."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest

from sbom import (
    ComponentManifestError,
    ComponentSpec,
    OrganizationSpec,
    load_component_manifest,
    load_manifest,
)

WriteManifest = Callable[[str], Path]

SHA256 = "8b54fb9bcf4d5a7078028e0520acddefb7900b3e66fec7f7175bb5b7d85ccdca"


def test_valid_manifest_is_parsed_in_order_with_defaults(example_manifest: Path) -> None:
    zephyr, mbedtls, app = load_component_manifest(example_manifest)

    assert zephyr == ComponentSpec(
        name="zephyr",
        version="3.7.0",
        type="operating-system",
        supplier="Zephyr Project",
        purl="pkg:github/zephyrproject-rtos/zephyr@v3.7.0",
        cpe="cpe:2.3:o:zephyrproject:zephyr:3.7.0:*:*:*:*:*:*:*",
        licenses=("Apache-2.0",),
        support_level="supported",
        end_of_support=datetime.date(2029, 7, 31),
        depends_on=("component:mbedtls@3.6.2",),
    )
    assert mbedtls.type == "library"
    assert mbedtls.hashes == (("SHA-256", SHA256),)  # lower-cased
    assert mbedtls.support_level == "unknown"
    assert mbedtls.end_of_support is None
    assert mbedtls.supplier is None
    assert app.end_of_support is None
    assert load_manifest(example_manifest).supplier == OrganizationSpec(
        name="Acme Medical Devices", url="https://acme-medical.example"
    )


def test_empty_manifest_has_no_components(write_manifest: WriteManifest) -> None:
    assert load_component_manifest(write_manifest("")) == []


@pytest.mark.parametrize(
    ("alg", "cdx_name", "digits"),
    [
        ("sha256", "SHA-256", 64),
        ("SHA-256", "SHA-256", 64),
        ("sha3_512", "SHA3-512", 128),
        ("blake2b-384", "BLAKE2b-384", 96),
        ("md5", "MD5", 32),
        ("sha1", "SHA-1", 40),
    ],
)
def test_hash_algorithms_are_accepted_in_common_spellings(
    write_manifest: WriteManifest, alg: str, cdx_name: str, digits: int
) -> None:
    path = write_manifest(
        f'[[component]]\nname = "x"\nversion = "1"\nhashes = {{ "{alg}" = "{"a" * digits}" }}\n'
    )
    (spec,) = load_component_manifest(path)
    assert spec.hashes == ((cdx_name, "a" * digits),)


def test_license_ids_are_case_corrected(write_manifest: WriteManifest) -> None:
    path = write_manifest('[[component]]\nname = "x"\nversion = "1"\nlicenses = ["mit", "zlib"]\n')
    (spec,) = load_component_manifest(path)
    assert spec.licenses == ("MIT", "Zlib")


def test_quoted_iso_date_is_accepted_for_end_of_support(write_manifest: WriteManifest) -> None:
    path = write_manifest(
        '[[component]]\nname = "x"\nversion = "1"\nend_of_support = "2030-01-31"\n'
    )
    (spec,) = load_component_manifest(path)
    assert spec.end_of_support == datetime.date(2030, 1, 31)


def test_depends_on_may_name_a_version_when_a_name_has_several(
    write_manifest: WriteManifest,
) -> None:
    path = write_manifest(
        """
        [[component]]
        name = "zlib"
        version = "1.2.13"
        [[component]]
        name = "zlib"
        version = "1.3.1"
        [[component]]
        name = "app"
        version = "1"
        depends_on = ["zlib@1.3.1"]
        """
    )
    assert load_component_manifest(path)[2].depends_on == ("component:zlib@1.3.1",)


def _component(body: str, name: str = "lib") -> str:
    return f'[[component]]\nname = "{name}"\nversion = "1.0"\n{body}\n'


# (manifest text, fragments the error message must contain)
BAD_MANIFESTS: list[tuple[str, str, tuple[str, ...]]] = [
    ("not-toml", "[[component]\nname = 1", ("not valid TOML",)),
    ("unknown-top-level-key", 'product = "x"\n', ("unknown key(s) 'product'",)),
    ("component-not-array", 'component = "x"\n', ("field 'component'", "[[component]]")),
    (
        "missing-name",
        '[[component]]\nversion = "1"\n',
        ("[[component]] #1", "field 'name'", "is required"),
    ),
    (
        "missing-version",
        _component("") + '[[component]]\nname = "other"\n',
        ("[[component]] #2 ('other')", "field 'version'", "is required"),
    ),
    (
        "numeric-version",
        '[[component]]\nname = "x"\nversion = 1.2\n',
        ("field 'version'", "must be a string", "quote it"),
    ),
    ("empty-name", '[[component]]\nname = ""\nversion = "1"\n', ("field 'name'", "empty")),
    (
        "unknown-component-key",
        _component('licence = ["MIT"]\ncolour = "red"'),
        ("('lib')", "unknown key(s) 'colour', 'licence'"),
    ),
    ("bad-type", _component('type = "widget"'), ("field 'type'", "'widget'", "library")),
    (
        "bad-support-level",
        _component('support_level = "maybe"'),
        ("field 'support_level'", "'maybe'", "supported"),
    ),
    ("bad-purl", _component('purl = "npm/left-pad"'), ("field 'purl'", "package URL")),
    ("purl-no-type", _component('purl = "pkg:/x"'), ("field 'purl'",)),
    ("bad-cpe", _component('cpe = "zephyr 3.7"'), ("field 'cpe'", "CPE")),
    ("short-cpe23", _component('cpe = "cpe:2.3:o:zephyr:zephyr"'), ("field 'cpe'",)),
    (
        "licenses-not-list",
        _component('licenses = "MIT"'),
        ("field 'licenses'", "list of non-empty strings"),
    ),
    (
        "unknown-license",
        _component('licenses = ["Acme Proprietary"]'),
        ("field 'licenses'", "'Acme Proprietary'", "SPDX"),
    ),
    (
        "broken-expression",
        _component('licenses = ["MIT OR"]'),
        ("field 'licenses'", "'MIT OR'"),
    ),
    (
        "expression-mixed-with-ids",
        _component('licenses = ["MIT", "Apache-2.0 OR MIT"]'),
        ("field 'licenses'", "must be the only entry"),
    ),
    (
        "repeated-license",
        _component('licenses = ["MIT", "mit"]'),
        ("field 'licenses'", "more than once"),
    ),
    (
        "hash-wrong-length",
        _component(f'hashes = {{ sha256 = "{SHA256[:-2]}" }}'),
        ("field 'hashes.sha256'", "64 hexadecimal digits"),
    ),
    (
        "hash-not-hex",
        _component(f'hashes = {{ sha256 = "{"g" * 64}" }}'),
        ("field 'hashes.sha256'", "hexadecimal"),
    ),
    (
        "hash-trailing-newline",
        _component(f'hashes = {{ sha1 = "{"a" * 39}\\n" }}'),
        ("field 'hashes.sha1'", "40 hexadecimal digits"),
    ),
    (
        "hash-unknown-algorithm",
        _component(f'hashes = {{ crc32 = "{SHA256}" }}'),
        ("field 'hashes.crc32'", "unknown hash algorithm"),
    ),
    (
        "hash-given-twice",
        _component(f'hashes = {{ sha256 = "{SHA256}", "SHA-256" = "{SHA256}" }}'),
        ("second SHA-256",),
    ),
    ("hashes-not-table", _component('hashes = ["x"]'), ("field 'hashes'", "table")),
    (
        "end-of-support-datetime",
        _component("end_of_support = 2030-01-01T00:00:00Z"),
        ("field 'end_of_support'", "not a date and time"),
    ),
    (
        "end-of-support-word",
        _component('end_of_support = "soon"'),
        ("field 'end_of_support'", "'soon'"),
    ),
    (
        "end-of-support-impossible-date",
        _component('end_of_support = "2030-02-30"'),
        ("field 'end_of_support'", "not a real date"),
    ),
    (
        "end-of-support-number",
        _component("end_of_support = 2030"),
        ("field 'end_of_support'", "a number"),
    ),
    (
        "depends-on-unknown",
        _component('depends_on = ["zlib"]'),
        ("('lib')", "field 'depends_on'", "'zlib' is not a component"),
    ),
    (
        "depends-on-itself",
        _component('depends_on = ["lib"]'),
        ("field 'depends_on'", "itself"),
    ),
    (
        "depends-on-ambiguous",
        _component("", "zlib")
        + '[[component]]\nname = "zlib"\nversion = "2.0"\n'
        + _component('depends_on = ["zlib"]', "app"),
        ("[[component]] #3 ('app')", "ambiguous", "zlib@1.0, zlib@2.0"),
    ),
    (
        "depends-on-twice",
        _component("", "zlib") + _component('depends_on = ["zlib", "zlib@1.0"]', "app"),
        ("field 'depends_on'", "more than once"),
    ),
    (
        "duplicate-component",
        _component("", "zlib") + _component('licenses = ["Zlib"]', "zlib"),
        ("[[component]] #2 ('zlib')", "duplicate component zlib 1.0", "#1"),
    ),
    ("supplier-not-string", _component("supplier = 3"), ("field 'supplier'", "string")),
    (
        "control-character",
        _component('description = "a\\u0007b"'),
        ("field 'description'", "control characters"),
    ),
    ("top-supplier-not-table", 'supplier = "Acme"\n', ("field 'supplier'", "must be a table")),
    ("top-supplier-no-name", '[supplier]\nurl = "https://a.example"\n', ("'supplier.name'",)),
    (
        "top-supplier-bad-url",
        '[supplier]\nname = "Acme"\nurl = "ftp://acme.example"\n',
        ("'supplier.url'", "http(s) URL"),
    ),
    (
        "top-manufacturer-unknown-key",
        '[manufacturer]\nname = "Acme"\nphone = "1"\n',
        ("unknown key(s) 'phone' in [manufacturer]",),
    ),
]


@pytest.mark.parametrize(
    ("text", "fragments"),
    [(text, fragments) for _, text, fragments in BAD_MANIFESTS],
    ids=[case for case, _, _ in BAD_MANIFESTS],
)
def test_bad_manifest_is_refused_naming_file_component_and_field(
    write_manifest: WriteManifest, text: str, fragments: tuple[str, ...]
) -> None:
    path = write_manifest(text)
    with pytest.raises(ComponentManifestError) as raised:
        load_component_manifest(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_missing_manifest_file_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ComponentManifestError, match="cannot read the manifest"):
        load_component_manifest(tmp_path / "absent.toml")


def test_manifest_error_exit_code_is_the_configuration_one() -> None:
    assert ComponentManifestError.exit_code == 2


@pytest.mark.parametrize(
    ("licenses", "expected"),
    [
        ('["GPL-2.0-only WITH Linux-syscall-note"]', ("GPL-2.0-only WITH Linux-syscall-note",)),
        ('["MIT AND LicenseRef-acme"]', ("MIT AND LicenseRef-acme",)),
        ('["MIT", "LicenseRef-acme"]', ("MIT", "LicenseRef-acme")),
    ],
    ids=["with-exception", "expression-with-license-ref", "id-and-license-ref"],
)
def test_spdx_expressions_and_license_refs_are_accepted(
    write_manifest: WriteManifest, licenses: str, expected: tuple[str, ...]
) -> None:
    path = write_manifest(f'[[component]]\nname = "x"\nversion = "1"\nlicenses = {licenses}\n')
    (spec,) = load_component_manifest(path)
    assert spec.licenses == expected


def test_description_may_span_lines_but_a_name_may_not(write_manifest: WriteManifest) -> None:
    path = write_manifest('[[component]]\nname = "x"\nversion = "1"\ndescription = "a\\nb"\n')
    assert load_component_manifest(path)[0].description == "a\nb"

    path = write_manifest('[[component]]\nname = "x\\ny"\nversion = "1"\n')
    with pytest.raises(ComponentManifestError, match="field 'name': must be one line"):
        load_component_manifest(path)
