"""y-prosemirror itself reads our Yjs form, and we read its form.

Python -> JS: each fixture is converted with our code, its Yjs update is handed to
`tests/js/yjs_to_pm.mjs`, which converts `Y.XmlFragment('default')` with y-prosemirror's
`yXmlFragmentToProseMirrorRootNode` and the editor schema (`tests/js/prosemirror_schema.mjs`)
and prints the ProseMirror JSON. y-prosemirror drops what its schema rejects, so the counts
of elements and characters on both sides must match, ProseMirror's content check must pass,
and the JSON must be exactly our document.

JS -> Python: `tests/js/pm_to_yjs.mjs` builds a Y.Doc from ProseMirror JSON with
`prosemirrorJSONToYDoc`; we apply its update and serialise the fragment to Markdown.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, XmlElement, XmlFragment, XmlText

from civicrealtime.records import RecordIndex, fragment_to_markdown, markdown_to_fragment
from civicrealtime.records import schema as names
from civicrealtime.records.model import Node, Text
from civicrealtime.records.yjs_form import read_fragment

from .helpers import DATA_DIR, new_fragment

JS_DIR = Path(__file__).resolve().parents[1] / "js"
NODE = shutil.which("node")
TIMEOUT = 60.0

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(NODE is None, reason="node (Node.js) not found on PATH"),
    pytest.mark.skipif(
        not (JS_DIR / "node_modules" / "y-prosemirror").is_dir(),
        reason="y-prosemirror not installed: run `npm ci --prefix tests/js` (nox -s tests does it)",
    ),
]

INDEX = RecordIndex(DATA_DIR)
INDEX.scan()


def _node_json(script: str, *args: str) -> str:
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(JS_DIR / script), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def editor_view(doc: Doc[Any], tmp_path: Path) -> dict[str, Any]:
    update = tmp_path / "update.bin"
    update.write_bytes(doc.get_update())
    result: dict[str, Any] = json.loads(_node_json("yjs_to_pm.mjs", str(update)))
    return result


def pm_json(item: Node | Text) -> dict[str, Any]:
    """What ProseMirror's toJSON gives for our tree (attrs listed whenever a type has any)."""
    if isinstance(item, Text):
        out: dict[str, Any] = {"type": "text"}
        if item.marks:
            out["marks"] = [
                {"type": m.name, **({"attrs": dict(m.attrs)} if m.attrs else {})}
                for m in item.marks
            ]
        out["text"] = item.text
        return out
    out = {"type": item.name}
    if item.attrs:
        out["attrs"] = dict(item.attrs)
    if item.content:
        out["content"] = [pm_json(child) for child in item.content]
    return out


def _utf16(value: str) -> int:
    return len(value.encode("utf-16-le")) // 2


def _text_length(nodes: tuple[Node | Text, ...]) -> int:
    return sum(_utf16(n.text) if isinstance(n, Text) else _text_length(n.content) for n in nodes)


@pytest.mark.parametrize("record_id", INDEX.ids())
def test_y_prosemirror_reads_every_fixture_without_dropping(record_id: str, tmp_path: Path) -> None:
    doc, fragment = new_fragment()
    report = markdown_to_fragment(INDEX.read(record_id).body, fragment)
    view = editor_view(doc, tmp_path)
    assert view["valid"], view["error"]
    assert view["yElements"] == view["pmNodes"] == report.elements
    tree = read_fragment(fragment)
    assert view["yText"] == view["pmText"] == _text_length(tree)
    assert view["doc"] == {"type": "doc", "content": [pm_json(block) for block in tree]}


def _find(node: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    found = [node] if node.get("type") == kind else []
    for child in node.get("content", []):
        found.extend(_find(child, kind))
    return found


def test_editor_sees_headings_lists_tables_refs_and_marks(tmp_path: Path) -> None:
    doc, fragment = new_fragment()
    markdown_to_fragment(INDEX.read("bylaw-2026-004").body, fragment)
    pm = editor_view(doc, tmp_path)["doc"]

    assert [h["attrs"]["level"] for h in _find(pm, "heading")] == [1, 2, 2, 2]
    ordered = _find(pm, "ordered_list")
    assert [o["attrs"]["order"] for o in ordered] == [3]
    assert len(ordered[0]["content"]) == 3
    bullet = _find(pm, "bullet_list")[0]
    first_item = bullet["content"][0]
    assert [c["type"] for c in first_item["content"]] == ["paragraph", "bullet_list"]

    headers = _find(pm, "table_header")
    assert [h["attrs"]["align"] for h in headers] == ["left", "right", "center"]
    assert [c["attrs"]["align"] for c in _find(pm, "table_cell")[:3]] == ["left", "right", "center"]
    assert headers[0]["content"] == [
        {"type": "paragraph", "content": [{"type": "text", "text": "Permis"}]}
    ]

    refs = [r["attrs"] for r in _find(pm, "civicRef")]
    assert refs == [
        {"refType": "record", "id": "bylaw-2019-011", "label": "Règlement 2019-11"},
        {"refType": "geography", "id": "geo-parc-central", "label": "Parc central"},
    ]
    texts = [t for t in _find(pm, "text") if "marks" in t]
    marks = {(t["text"], json.dumps(t["marks"], ensure_ascii=False)) for t in texts}
    assert ("été", '[{"type": "strong"}]') in marks
    assert ("Ville d'Exemple", '[{"type": "em"}]') in marks
    assert ("art. 12", '[{"type": "code"}]') in marks
    link = next(t for t in texts if t["text"] == "Code de la sécurité routière")
    assert link["marks"] == [
        {
            "type": "link",
            "attrs": {
                "href": "https://www.legisquebec.gouv.qc.ca/fr/document/lc/C-24.2",
                "title": "Code de la sécurité routière",
            },
        }
    ]


def test_the_check_detects_what_y_prosemirror_drops(tmp_path: Path) -> None:
    """A wrong element or mark name is silently dropped by y-prosemirror: the counts show it."""
    doc, fragment = new_fragment()
    with doc.transaction():
        paragraph = fragment.children.append(XmlElement(names.PARAGRAPH))
        ytext = paragraph.children.append(XmlText())
        ytext.insert(0, "souligné", {"underline": {}})
        fragment.children.append(XmlElement("bogus_block"))
    view = editor_view(doc, tmp_path)
    assert view["yElements"] == 2
    assert view["pmNodes"] < view["yElements"]
    assert view["pmText"] < view["yText"]


EDITOR_DOC: dict[str, Any] = {
    "type": "doc",
    "content": [
        {
            "type": "heading",
            "attrs": {"level": 2},
            "content": [{"type": "text", "text": "Été 2026"}],
        },
        {
            "type": "paragraph",
            "content": [
                {"type": "text", "text": "Tarif "},
                {"type": "text", "marks": [{"type": "strong"}], "text": "réduit"},
                {"type": "text", "text": " de 5 * 3 $ pour "},
                {
                    "type": "text",
                    "marks": [
                        {"type": "link", "attrs": {"href": "https://ex.org/a", "title": None}}
                    ],
                    "text": "les aînés",
                },
                {"type": "text", "text": ", voir "},
                {
                    "type": "civicRef",
                    "attrs": {"refType": "record", "id": "res-2025-118", "label": "Résolution"},
                },
                {"type": "hard_break"},
                {"type": "text", "marks": [{"type": "em"}, {"type": "code"}], "text": "art_3"},
                {"type": "text", "text": " 🙂"},
            ],
        },
        {
            "type": "ordered_list",
            "attrs": {"order": 3},
            "content": [
                {
                    "type": "list_item",
                    "content": [
                        {"type": "paragraph", "content": [{"type": "text", "text": "trois"}]},
                        {
                            "type": "bullet_list",
                            "content": [
                                {
                                    "type": "list_item",
                                    "content": [
                                        {
                                            "type": "paragraph",
                                            "content": [{"type": "text", "text": "# pas un titre"}],
                                        }
                                    ],
                                }
                            ],
                        },
                    ],
                }
            ],
        },
        {"type": "paragraph"},
        {
            "type": "table",
            "content": [
                {
                    "type": "table_row",
                    "content": [
                        {
                            "type": "table_header",
                            "attrs": {"align": "center"},
                            "content": [
                                {"type": "paragraph", "content": [{"type": "text", "text": "A|B"}]}
                            ],
                        },
                        {
                            "type": "table_header",
                            "content": [
                                {"type": "paragraph", "content": [{"type": "text", "text": "C"}]}
                            ],
                        },
                    ],
                },
                {
                    "type": "table_row",
                    "content": [
                        {
                            "type": "table_cell",
                            "attrs": {"align": "center"},
                            "content": [{"type": "paragraph"}],
                        },
                        {
                            "type": "table_cell",
                            "content": [
                                {"type": "paragraph", "content": [{"type": "text", "text": "2"}]}
                            ],
                        },
                    ],
                },
            ],
        },
        {
            "type": "code_block",
            "attrs": {"params": "yaml"},
            "content": [{"type": "text", "text": "id: x\n```\n"}],
        },
        {
            "type": "blockquote",
            "content": [{"type": "paragraph", "content": [{"type": "text", "text": "Fin."}]}],
        },
        {"type": "horizontal_rule"},
        {
            "type": "paragraph",
            "content": [
                {
                    "type": "image",
                    "attrs": {"src": "https://ex.org/p.png", "alt": "Plan", "title": None},
                }
            ],
        },
    ],
}

EDITOR_MARKDOWN = """\
## Été 2026

Tarif **réduit** de 5 \\* 3 $ pour [les aînés](https://ex.org/a), voir \
<!--civic-ref type="record" id="res-2025-118" label="Résolution"-->\\
*`art_3`* 🙂

3. trois
   - \\# pas un titre

| A\\|B | C |
| :---: | --- |
|  | 2 |

````yaml
id: x
```

````

> Fin.

---

![Plan](https://ex.org/p.png)
"""


def test_markdown_from_a_document_built_by_y_prosemirror(tmp_path: Path) -> None:
    source = tmp_path / "doc.json"
    source.write_text(json.dumps(EDITOR_DOC), encoding="utf-8")
    update = tmp_path / "update.bin"
    _node_json("pm_to_yjs.mjs", str(source), str(update))

    doc: Doc[Any] = Doc()
    doc.apply_update(update.read_bytes())
    fragment = doc.get("default", type=XmlFragment)
    markdown = fragment_to_markdown(fragment)
    assert markdown == EDITOR_MARKDOWN

    # Seeding from that Markdown gives the editor's document back (less the empty
    # paragraph, which Markdown cannot hold).
    _, reseeded = new_fragment()
    markdown_to_fragment(markdown, reseeded)
    editor_tree = [b for b in read_fragment(fragment) if b.name != "paragraph" or b.content]
    assert list(read_fragment(reseeded)) == editor_tree
