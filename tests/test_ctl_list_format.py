"""``ctl list -f TEMPLATE``: tunasynctl's Go-template output, one line per job.

The template runs over the same item as the JSON output (``WebMirrorStatus`` for ``--all``,
``MirrorStatus`` per worker) with Go's field names; what it cannot do is a one-line error
with exit status 2, before anything is asked of the bus.
"""

from __future__ import annotations

import pytest
from e2e import Site

from mirrorbus.cli.gotemplate import MIRROR_FIELDS, WEB_FIELDS, GoTemplate
from mirrorbus.errors import ConfigError
from projections.tunasync import WEB_FIELDS as WEB_JSON_KEYS

JOB = """
[[mirrors]]
name = "{name}"
provider = "command"
upstream = "https://example.org/{name}/"
command = '''/bin/sh -c 'echo "Total size is 1.5K"' '''
size_pattern = "Total size is ([0-9\\\\.]+[KMGTP]?)"
"""

ITEM = {"name": "debian", "status": "success", "is_master": False, "size": "1.5K", "x": 1}


def test_fields_substitute_with_literal_text_and_shell_escapes() -> None:
    t = GoTemplate(r"{{.Name}}\t{{ .Status }} master={{.IsMaster}}\n[{{.Size}}] \\t", WEB_FIELDS)
    assert t.render(ITEM) == "debian\tsuccess master=false\n[1.5K] \\t"
    assert GoTemplate("plain text", WEB_FIELDS).render(ITEM) == "plain text"
    assert GoTemplate("", WEB_FIELDS).render(ITEM) == ""
    assert GoTemplate("a }} b", WEB_FIELDS).render(ITEM) == "a }} b"  # as in Go: literal


def test_trim_markers_remove_the_white_space_beside_an_action() -> None:
    assert GoTemplate("{{.Name}}  \n {{- .Status -}}  !", WEB_FIELDS).render(ITEM) == (
        "debiansuccess!"
    )


def test_the_go_field_names_are_tunasyncs() -> None:
    assert list(WEB_FIELDS.values()) == list(WEB_JSON_KEYS)
    assert WEB_FIELDS["Scheduled"] == "next_schedule" and WEB_FIELDS["ScheduledTs"] == (
        "next_schedule_ts"
    )
    assert "ErrorMsg" in MIRROR_FIELDS and "ErrorMsg" not in WEB_FIELDS
    assert "Worker" in MIRROR_FIELDS and "Worker" not in WEB_FIELDS


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.Nmae}}", "unknown field .Nmae in the template (fields: Name, IsMaster,"),
        ("{{.ErrorMsg}}", "unknown field .ErrorMsg"),  # not in WebMirrorStatus
        ("{{.name}}", "unknown field .name"),  # Go field names are case-sensitive
        ("{{range .}}{{.Name}}{{end}}", "unsupported template syntax {{range .}}"),
        ('{{.Name | printf "%s"}}', "unsupported template syntax {{.Name | printf"),
        ("{{.}}", "unsupported template syntax {{.}}"),
        ("{{/* note */}}", "unsupported template syntax"),
        ("{{.Name", "unclosed action '{{.Name' in the template"),
        ("{{ {{.Name}}", "unclosed action"),
    ],
)
def test_what_it_cannot_do_is_one_clear_error(template: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GoTemplate(template, WEB_FIELDS)
    text = str(caught.value)
    assert text.startswith("key '--format': ") and message in text
    assert "\n" not in text


def test_list_format_end_to_end(site: Site) -> None:
    config = site.worker_config("w1", JOB.format(name="alpha") + JOB.format(name="beta"))
    site.start_manager()
    site.start_worker(config)
    for name in ("alpha", "beta"):
        site.wait_job("w1", name, lambda j: j.status == "success")

    # --all: WebMirrorStatus, a newline after each job, in the JSON's order and text.
    web = site.ctl("list", "--all", "-f", r"{{.Name}}\t{{.Status}}\t{{.Size}}\t{{.LastUpdateTs}}")
    assert web.returncode == 0, web.stderr
    lines = web.stdout.splitlines(keepends=True)
    assert [line.split("\t")[:3] for line in lines] == [
        ["alpha", "success", "1.5K"],
        ["beta", "success", "1.5K"],
    ]
    assert all(line.endswith("\n") and int(line.split("\t")[3]) > 0 for line in lines)
    with_text = site.ctl("list", "-a", "-s", "success", "--format", "{{.Name}} {{.LastUpdate}}")
    assert with_text.returncode == 0, with_text.stderr
    assert with_text.stdout.startswith("alpha 20") and with_text.stdout.count("\n") == 2

    # per worker: MirrorStatus, with Worker and ErrorMsg.
    per = site.ctl("list", "-w", "w1", "-f", "{{.Worker}}/{{.Name}} [{{.ErrorMsg}}] {{.IsMaster}}")
    assert per.returncode == 0, per.stderr
    assert per.stdout == "w1/alpha [] true\nw1/beta [] true\n"

    # errors: one line, exit 2.
    for args, text in (
        (["--all", "-f", "{{.ErrorMsg}}"], "unknown field .ErrorMsg"),
        (["-w", "w1", "-f", "{{.LastUpdateTs}}"], "unknown field .LastUpdateTs"),
        (["--all", "-f", "{{if .IsMaster}}m{{end}}"], "unsupported template syntax {{if"),
    ):
        bad = site.ctl("list", *args)
        assert bad.returncode == 2, bad
        assert bad.stdout == ""
        assert bad.stderr.startswith("mirrorbus ctl list: error: key '--format': ")
        assert text in bad.stderr and bad.stderr.count("\n") == 1
