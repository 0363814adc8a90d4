"""Every fixture record: Markdown -> Yjs -> Markdown is stable after one pass."""

from __future__ import annotations

import pytest

from civicrealtime.records import RecordIndex, fragment_to_markdown

from .helpers import DATA_DIR, convert, raw

INDEX = RecordIndex(DATA_DIR)
INDEX.scan()


@pytest.mark.parametrize("record_id", INDEX.ids())
def test_round_trip_is_idempotent(record_id: str) -> None:
    body = INDEX.read(record_id).body
    first, _ = convert(body)
    md1 = fragment_to_markdown(first)
    second, report = convert(md1)
    md2 = fragment_to_markdown(second)
    assert md1 == md2
    assert raw(first) == raw(second)
    # What was reported once has become plain content the second time round.
    assert report.unsupported == () or record_id == "policy-legacy-html"


@pytest.mark.parametrize("record_id", sorted(set(INDEX.ids()) - {"policy-legacy-html"}))
def test_supported_records_report_nothing(record_id: str) -> None:
    _, report = convert(INDEX.read(record_id).body)
    assert report.unsupported == ()


def test_bylaw_markdown_is_clean() -> None:
    fragment, _ = convert(INDEX.read("bylaw-2026-004").body)
    md = fragment_to_markdown(fragment)
    for expected in (
        "# Règlement municipal 2026-04\n",
        "## Article 1 — Définitions\n",
        "- **parc** : tout espace vert municipal, y compris :\n  - les aires de jeux ;\n",
        "[Code de la sécurité routière](https://www.legisquebec.gouv.qc.ca/fr/document/lc/"
        'C-24.2 "Code de la sécurité routière")',
        "3. Il est interdit de camper sans permis.\n4. Il est interdit",
        "(voir `art. 12`)",
        "> Nul ne peut entraver le travail d'un employé municipal.\n>\n> — Article",
        '\n<!--civic-ref type="geography" id="geo-parc-central" label="Parc central"-->\n',
        "\n---\n",
        "| Permis | Tarif | Durée |\n| :--- | ---: | :---: |\n| Pique-nique de groupe | 25 $ |",
        'Voir aussi <!--civic-ref type="record" id="bylaw-2019-011" label="Règlement 2019-11"-->',
    ):
        assert expected in md


def test_minutes_markdown_is_clean() -> None:
    fragment, _ = convert(INDEX.read("minutes-2026-04-14").body)
    md = fragment_to_markdown(fragment)
    assert "## 1. Ouverture de la séance\n" in md
    assert "1. Ouverture\n2. Ordre du jour\n   1. Ajout du point 7.3\n" in md
    assert "La séance est levée à 21 h 15.\\\nProchaine séance : 12 mai 2026.\n" in md


def test_legacy_html_record_keeps_everything() -> None:
    fragment, report = convert(INDEX.read("policy-legacy-html").body)
    assert {u.kind for u in report.unsupported} == {
        "html_block",
        "html_inline",
        "footnote",
        "strikethrough",
    }
    md = fragment_to_markdown(fragment)
    assert '```html\n<div class="encadre">\n  <p>Contenu important' in md
    assert "2\\<sup>e\\</sup> palier\\[^1\\] et ~~abrogé~~ remplacé." in md
    assert "\\[^1\\]: Selon le règlement de 2019." in md
