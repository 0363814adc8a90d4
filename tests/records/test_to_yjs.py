"""Markdown -> y-prosemirror form: element names, attributes, text and formatting, exactly
as pycrdt stores them (see yjs_form's docstring for what y-prosemirror does)."""

from __future__ import annotations

from civicrealtime.records import markdown_to_fragment
from civicrealtime.records.to_yjs import ConversionReport

from .helpers import blocks_of, convert, new_fragment

P = "paragraph"


def text(*runs: tuple[str, dict[str, object]] | str) -> tuple[str, list[tuple[str, object]]]:
    return ("#text", [(r, {}) if isinstance(r, str) else r for r in runs])


def test_paragraph_with_marks() -> None:
    body = 'Le *conseil* **adopte** `art. 3` et [le budget](https://ex.org/b "Budget 2026").\n'
    assert blocks_of(body) == [
        (
            P,
            {},
            [
                text(
                    "Le ",
                    ("conseil", {"em": {}}),
                    " ",
                    ("adopte", {"strong": {}}),
                    " ",
                    ("art. 3", {"code": {}}),
                    " et ",
                    ("le budget", {"link": {"href": "https://ex.org/b", "title": "Budget 2026"}}),
                    ".",
                )
            ],
        )
    ]


def test_link_without_title_stores_null_title_and_marks_nest() -> None:
    [(_, _, [content])] = blocks_of("***[tout](/r)*** fin\n")
    assert content == text(
        ("tout", {"link": {"href": "/r", "title": None}, "em": {}, "strong": {}}), " fin"
    )


def test_heading_levels_are_numbers() -> None:
    blocks = blocks_of("# Un\n\n### Trois\n\nSetext\n---\n")
    assert [(tag, attrs) for tag, attrs, _ in blocks] == [
        ("heading", {"level": 1.0}),
        ("heading", {"level": 3.0}),
        ("heading", {"level": 2.0}),
    ]
    # pycrdt reads a JavaScript number as a float; y-prosemirror writes a number too.
    assert all(isinstance(attrs["level"], float) for _, attrs, _ in blocks)


def test_accents_and_emoji_keep_formatting_offsets() -> None:
    [(_, _, [content])] = blocks_of("été ☀️ *règle* 🏛 fin\n")
    assert content == text("été ☀️ ", ("règle", {"em": {}}), " 🏛 fin")


def test_inline_atoms_sit_between_texts() -> None:
    body = (
        'Voir <!--civic-ref type="record" id="rec-abc" label="Budget 2026"--> et'
        ' ![Plan](p.png "Le plan")\\\nsuite\n'
    )
    [(tag, _, children)] = blocks_of(body)
    assert tag == P
    assert children == [
        text("Voir "),
        ("civicRef", {"refType": "record", "id": "rec-abc", "label": "Budget 2026"}, []),
        text(" et "),
        ("image", {"src": "p.png", "alt": "Plan", "title": "Le plan"}, []),
        ("hard_break", {}, []),
        text("suite"),
    ]


def test_null_attributes_are_not_stored() -> None:
    [(_, _, children)] = blocks_of('![](x.png) <!--civic-ref type="geography" id="geo-1"-->\n')
    assert children[0] == ("image", {"src": "x.png"}, [])
    assert children[2] == ("civicRef", {"refType": "geography", "id": "geo-1"}, [])


def test_civic_ref_alone_on_its_line_is_a_paragraph() -> None:
    body = 'Avant.\n\n<!--civic-ref type="attachment" id="att-1" label="Annexe"-->\n\nAprès.\n'
    blocks = blocks_of(body)
    assert blocks[1] == (
        P,
        {},
        [("civicRef", {"refType": "attachment", "id": "att-1", "label": "Annexe"}, [])],
    )
    assert len(blocks) == 3


def test_civic_ref_starting_a_line_keeps_the_rest_of_the_line() -> None:
    [(tag, _, children)] = blocks_of('<!--civic-ref type="record" id="r1"--> *voir* ceci\n')
    assert tag == P
    assert children == [
        ("civicRef", {"refType": "record", "id": "r1"}, []),
        text(" ", ("voir", {"em": {}}), " ceci"),
    ]


def test_lists_and_items() -> None:
    body = "- un\n- deux\n  - imbriqué\n\n3. trois\n4. quatre\n\n1) un\n"
    bullet, ordered, first = blocks_of(body)
    assert bullet[0] == "bullet_list"
    assert bullet[2][0] == ("list_item", {}, [(P, {}, [text("un")])])
    assert bullet[2][1] == (
        "list_item",
        {},
        [
            (P, {}, [text("deux")]),
            ("bullet_list", {}, [("list_item", {}, [(P, {}, [text("imbriqué")])])]),
        ],
    )
    assert ordered[:2] == ("ordered_list", {"order": 3.0})
    assert [item[2][0] for item in ordered[2]] == [
        (P, {}, [text("trois")]),
        (P, {}, [text("quatre")]),
    ]
    # Like y-prosemirror, the default is written too.
    assert first[:2] == ("ordered_list", {"order": 1.0})


def test_list_item_starts_with_a_paragraph() -> None:
    [bullet] = blocks_of("- ```\n  code\n  ```\n-\n")
    first, empty = bullet[2]
    assert first[2][0] == (P, {}, [])
    assert first[2][1] == ("code_block", {"params": ""}, [text("code")])
    assert empty == ("list_item", {}, [(P, {}, [])])


def test_code_blocks_keep_info_string() -> None:
    fenced, indented = blocks_of("```python title=x.py\nprint('hé')\n\nx = 1\n```\n\n    indent\n")
    assert fenced == ("code_block", {"params": "python title=x.py"}, [text("print('hé')\n\nx = 1")])
    assert indented == ("code_block", {"params": ""}, [text("indent")])


def test_blockquote_and_rule() -> None:
    quote, rule = blocks_of("> cité\n>\n> suite\n\n---\n")
    assert quote == ("blockquote", {}, [(P, {}, [text("cité")]), (P, {}, [text("suite")])])
    assert rule == ("horizontal_rule", {}, [])


def test_table_cells_hold_paragraphs_with_alignment() -> None:
    body = "| A | B | C | D |\n|:--|--:|:-:|---|\n| 1 | *2* | 3 | 4 |\n"
    [(tag, _, rows)] = blocks_of(body)
    assert tag == "table"
    header, row = rows
    assert header[0] == "table_row"
    assert [(cell[0], cell[1]) for cell in header[2]] == [
        ("table_header", {"align": "left"}),
        ("table_header", {"align": "right"}),
        ("table_header", {"align": "center"}),
        ("table_header", {}),  # null align is not stored
    ]
    assert row[2][1] == ("table_cell", {"align": "right"}, [(P, {}, [text(("2", {"em": {}}))])])


def test_softbreak_is_a_space_and_entities_are_decoded() -> None:
    [(_, _, [content])] = blocks_of("un\ndeux &amp; trois \\*\n")
    assert content == text("un deux & trois *")


def test_report_lists_unsupported_content_without_losing_it() -> None:
    body = (
        "Texte<sup>2</sup> et ~~barré~~[^1].\n\n"
        "<div>\nbloc\n</div>\n\n"
        "[![img](i.png)](https://ex.org)\n\n"
        "[^1]: La note.\n"
    )
    _, report = convert(body)
    assert isinstance(report, ConversionReport)
    assert [(u.line, u.kind) for u in report.unsupported] == [
        (1, "html_inline"),
        (1, "html_inline"),
        (1, "footnote"),
        (1, "strikethrough"),
        (3, "html_block"),
        (7, "link_on_image"),
        (9, "footnote"),
    ]
    blocks = blocks_of(body)
    assert blocks[0][2] == [text("Texte<sup>2</sup> et ~~barré~~[^1].")]
    assert blocks[1] == ("code_block", {"params": "html"}, [text("<div>\nbloc\n</div>")])
    assert blocks[2][2] == [("image", {"src": "i.png", "alt": "img"}, [])]
    assert blocks[3][2] == [text("[^1]: La note.")]


def test_footnote_read_as_link_definition_is_reported() -> None:
    _, report = convert("Voir[^n].\n\n[^n]: https://ex.org/note\n")
    assert [(u.line, u.kind) for u in report.unsupported] == [(3, "footnote")]
    assert blocks_of("Voir[^n].\n\n[^n]: https://ex.org/note\n") == [
        (
            P,
            {},
            [text("Voir", ("^n", {"link": {"href": "https://ex.org/note", "title": None}}), ".")],
        )
    ]


def test_report_counts_elements_and_empty_body_writes_nothing() -> None:
    fragment, report = convert("")
    assert report.elements == 0
    assert len(fragment.children) == 0
    _, report = convert("# T\n\n- a\n")
    assert report.elements == 4  # heading, bullet_list, list_item, paragraph


def test_seeding_is_one_transaction() -> None:
    doc, fragment = new_fragment()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    markdown_to_fragment("# T\n\nUn *deux* trois.\n", fragment)
    assert len(updates) == 1
