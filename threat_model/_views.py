"""The four architecture views FDA's premarket cybersecurity guidance asks for.

Each view is derived from the threat model, so it cannot drift from it:

* global system: the trust domains and every interface that crosses them;
* multi-patient harm: the paths a release travels from signing to many pumps,
  with the controls that bound how many patients one bad or malicious release
  can reach;
* updatability and patchability: the path of a patch and the pump's update
  lifecycle (DESIGN.md, Device agent);
* security use cases: what each actor does and the controls guarding it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pumpguard.contract import AgentState
from threat_model._dot import attrs, quote
from threat_model._html import e, table
from threat_model.model import Category, Element, ElementKind, Flow, Severity, ThreatModel

__all__ = ["View", "build_views"]

#: Elements where a release is signed: by id or name (the catalogue's vocabulary).
_SIGNING = re.compile(r"sign|hsm", re.IGNORECASE)
#: Elements on the pump.
_PUMP = re.compile(r"pump|agent|bootloader|therapy", re.IGNORECASE)

#: The agent's update lifecycle (DESIGN.md, Device agent), in order: the wire
#: contract's states up to the self-test; the outcomes follow it.
_LIFECYCLE = tuple(
    s.value
    for s in AgentState
    if s not in (AgentState.COMMITTED, AgentState.ROLLING_BACK, AgentState.REPORTING)
)
_OUTCOMES = (AgentState.COMMITTED.value, AgentState.ROLLING_BACK.value, AgentState.REPORTING.value)

_GRAPH = (
    "  graph [fontname=Helvetica, fontsize=11, rankdir=LR, nodesep=0.3];\n"
    "  node [fontname=Helvetica, fontsize=10];\n"
    "  edge [fontname=Helvetica, fontsize=9];\n"
)


@dataclass(frozen=True)
class View:
    """One architecture view.

    Attributes:
        slug: File name stem: the diagram is ``view-<slug>.svg``.
        title: Heading.
        text: Explanation, HTML (already escaped).
        dot: The diagram's Graphviz source.
    """

    slug: str
    title: str
    text: str
    dot: str


def build_views(model: ThreatModel) -> tuple[View, ...]:
    """The four views of ``model`` (which must be valid)."""
    return (
        _global(model),
        _multi_patient(model),
        _updatability(model),
        _use_cases(model),
    )


def _node(element: Element) -> str:
    shape = {
        ElementKind.ACTOR: "box",
        ElementKind.PROCESS: "ellipse",
        ElementKind.STORE: "cylinder",
        ElementKind.DEVICE: "box3d",
    }[element.kind]
    return f"  {quote('el-' + element.id)} " + attrs(
        {"label": element.name, "shape": shape, "id": f"el-{element.id}"}
    )


def _edge(flow: Flow, model: ThreatModel, extra: dict[str, str] | None = None) -> str:
    values = {"label": flow.data, "id": f"flow-{flow.id}"}
    if model.crossing(flow):
        values.update({"color": "#d1242f", "penwidth": "2"})
    values.update(extra or {})
    return f"  {quote('el-' + flow.source)} -> {quote('el-' + flow.target)} " + attrs(values)


# ------------------------------------------------------------------ global
def _global(model: ThreatModel) -> View:
    members: dict[str, list[str]] = {b.id: [] for b in model.boundaries}
    for el in sorted(model.elements, key=lambda x: x.name):
        members[el.boundary].append(el.name)
    interfaces: dict[tuple[str, str], list[Flow]] = {}
    for flow in model.flows:
        a, b = model.element(flow.source).boundary, model.element(flow.target).boundary
        if a != b:
            interfaces.setdefault((a, b), []).append(flow)
    lines = ["digraph global_system {", _GRAPH]
    for boundary in sorted(model.boundaries, key=lambda x: x.id):
        label = boundary.name + "\n" + "\n".join(f"· {n}" for n in members[boundary.id])
        bid = f"b-{boundary.id}"
        lines.append(
            f"  {quote(bid)} "
            + attrs({"label": label, "shape": "box", "style": "rounded", "id": bid})
        )
    for (a, b), flows in sorted(interfaces.items()):
        label = "\n".join(sorted({f.data for f in flows}))
        lines.append(
            f"  {quote('b-' + a)} -> {quote('b-' + b)} "
            + attrs({"label": label, "color": "#d1242f"})
        )
    lines.append("}")
    rows = [
        [e(model_boundary_name(model, a)), e(model_boundary_name(model, b)), _flow_list(flows)]
        for (a, b), flows in sorted(interfaces.items())
    ]
    text = (
        "<p>The whole system as trust domains (boxes, with the elements inside each) "
        "and the interfaces between them (arrows). Every arrow crosses a trust boundary, "
        "so each is an attack surface analysed in the threat table.</p>"
        + table(["from", "to", "flows"], rows)
    )
    return View("global-system", "Global system view", text, "\n".join(lines) + "\n")


def model_boundary_name(model: ThreatModel, boundary_id: str) -> str:
    """The name of a boundary, or its id if unknown."""
    for b in model.boundaries:
        if b.id == boundary_id:
            return b.name
    return boundary_id


def _flow_list(flows: Iterable[Flow]) -> str:
    return "<br>".join(
        f"<code>{e(f.id)}</code> {e(f.data)}" + (f" ({e(f.protocol)})" if f.protocol else "")
        for f in sorted(flows, key=lambda x: x.id)
    )


# ------------------------------------------------------- multi-patient harm
def _ends(model: ThreatModel) -> tuple[set[str], set[str]]:
    """Signing elements and pump elements, by name; by graph shape when names do not tell."""
    sources = {el.id for el in model.elements if _SIGNING.search(f"{el.id} {el.name}")}
    sinks = {el.id for el in model.elements if _PUMP.search(f"{el.id} {el.name}")} - sources
    if not sources or not sinks:
        targets = {f.target for f in model.flows}
        origins = {f.source for f in model.flows}
        sources = sources or {el.id for el in model.elements if el.id not in targets}
        sinks = sinks or {el.id for el in model.elements if el.id not in origins}
    return sources, sinks


def _reach(starts: set[str], step: dict[str, set[str]]) -> set[str]:
    seen = set(starts)
    todo = sorted(starts)
    while todo:
        for nxt in sorted(step.get(todo.pop(), ())):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _release_path(model: ThreatModel) -> tuple[list[Flow], set[str], set[str]]:
    """The flows on some path from a signing element to a pump element."""
    sources, sinks = _ends(model)
    forward: dict[str, set[str]] = {}
    backward: dict[str, set[str]] = {}
    for f in model.flows:
        forward.setdefault(f.source, set()).add(f.target)
        backward.setdefault(f.target, set()).add(f.source)
    downstream, upstream = _reach(sources, forward), _reach(sinks, backward)
    on_path = [
        f
        for f in sorted(model.flows, key=lambda x: x.id)
        if f.source in downstream
        and f.target in upstream
        # Flows leaving the pump (check-ins, reports) do not carry the release.
        and not (f.source in sinks and f.target not in sinks)
    ]
    return on_path, sources, sinks


def _multi_patient(model: ThreatModel) -> View:
    flows, sources, sinks = _release_path(model)
    nodes = sorted({n for f in flows for n in (f.source, f.target)} or sources)
    on_path = set(nodes) | {f.id for f in flows}
    harmful = sorted(
        (
            t
            for t in model.threats
            if set(t.targets) & on_path
            and (t.category == Category.PATIENT_SAFETY or t.before.severity >= Severity.CRITICAL)
        ),
        key=lambda t: t.id,
    )
    # Controls of threats against a flow label the flow; those against an
    # element are notes attached to it.
    on_flow: dict[str, set[str]] = {}
    on_element: dict[str, set[str]] = {}
    for t in harmful:
        for target in t.targets:
            if target in nodes:
                on_element.setdefault(target, set()).update(t.controls)
            elif target in on_path:
                on_flow.setdefault(target, set()).update(t.controls)
    lines = ["digraph multi_patient_harm {", _GRAPH]
    pump_nodes = [n for n in nodes if n in sinks]
    lines += [_node(model.element(n)) for n in nodes if n not in sinks]
    lines.append('  subgraph "cluster_pump" {')
    lines.append('    label="one pump (of every pump the release is assigned to)"; style=dashed;')
    lines += ["  " + _node(model.element(n)) for n in pump_nodes]
    lines.append("  }")
    for f in flows:
        guards = sorted(on_flow.get(f.id, ()))
        label = f.data + (f"\nguarded by {_wrap(guards)}" if guards else "")
        lines.append(_edge(f, model, {"label": label}))
    for f in flows:
        if f.target in sinks and f.source not in sinks:
            lines.append(
                f"  {quote('el-' + f.source)} -> {quote('many-pumps')} "
                + attrs({"style": "dashed", "label": "same release"})
            )
    lines.append(
        f"  {quote('many-pumps')} "
        + attrs({"label": "pumps 2 … N\n(same path, many patients)", "shape": "box3d"})
    )
    for element_id in sorted(on_element):
        # One note per element, ids only: the table below gives each control's title.
        note = f"ctl-{element_id}"
        label = "controls:\n" + _wrap(sorted(on_element[element_id]))
        lines.append(
            f"  {quote(note)} "
            + attrs({"label": label, "shape": "note", "fontsize": "8", "id": note})
        )
        lines.append(
            f"  {quote(note)} -> {quote('el-' + element_id)} "
            + attrs({"style": "dotted", "arrowhead": "none"})
        )
    lines.append("}")
    rows = [
        [
            f"<code>{e(t.id)}</code>",
            e(t.title),
            _risk_cell(t.before.level, t.before.score),
            _risk_cell(t.after.level, t.after.score),
            e(", ".join(t.controls)),
        ]
        for t in harmful
    ]
    text = (
        "<p>One signed release reaches every pump it is assigned to, so a defective or "
        "malicious release could harm many patients at once. The diagram shows every path "
        "from where releases are signed to the pump (arrows in red cross a trust boundary) "
        "and, as notes, the controls that bound the blast radius: what must hold for a bad "
        "release to be stopped before, or contained after, it reaches the fleet.</p>"
        + table(["threat", "title", "risk before", "residual risk", "controls"], rows)
    )
    return View("multi-patient-harm", "Multi-patient harm view", text, "\n".join(lines) + "\n")


def _wrap(ids: list[str], per_line: int = 3) -> str:
    """Ids, a few per line, so a diagram stays readable."""
    return "\n".join(", ".join(ids[i : i + per_line]) for i in range(0, len(ids), per_line))


def _risk_cell(level: str, score: int) -> str:
    return f'<span class="level {e(level)}">{e(level)}</span> {e(score)}'


# ------------------------------------------------ updatability/patchability
def _updatability(model: ThreatModel) -> View:
    flows, _, sinks = _release_path(model)
    nodes = sorted({n for f in flows for n in (f.source, f.target)})
    lines = ["digraph updatability {", _GRAPH]
    lines += [_node(model.element(n)) for n in nodes]
    lines += [
        _edge(f, model, {"label": f"{f.data}\n({f.protocol})" if f.protocol else f.data})
        for f in flows
    ]
    lines.append('  subgraph "cluster_lifecycle" {')
    lines.append('    label="pump update lifecycle (every state persisted first)"; style=rounded;')
    for state in (*_LIFECYCLE, *_OUTCOMES):
        lines.append(f"    {quote('st-' + state)} " + attrs({"label": state, "shape": "box"}))
    chain = " -> ".join(quote("st-" + s) for s in _LIFECYCLE)
    lines.append(f"    {chain};")
    lines.append(f"    {quote('st-verifying-boot')} -> {quote('st-committed')} [label=pass];")
    lines.append(f'    {quote("st-verifying-boot")} -> {quote("st-rolling-back")} [label="fail"];')
    lines.append(f"    {quote('st-committed')} -> {quote('st-reporting')};")
    lines.append(f"    {quote('st-rolling-back')} -> {quote('st-reporting')};")
    lines.append("  }")
    entries = sorted({f.target for f in flows if f.target in sinks and f.source not in sinks})
    for n in entries:
        lines.append(
            f"  {quote('el-' + n)} -> {quote('st-idle')} "
            + attrs({"style": "dashed", "label": "runs"})
        )
    lines.append("}")
    threats_by_flow = {
        f.id: sorted(t.id for t in model.threats if f.id in t.targets) for f in flows
    }
    rows = [
        [
            f"<code>{e(f.id)}</code>",
            e(model.element(f.source).name),
            e(model.element(f.target).name),
            e(f.data),
            e(f.protocol),
            "yes" if model.crossing(f) else "no",
            e(", ".join(threats_by_flow[f.id])),
        ]
        for f in flows
    ]
    text = (
        "<p>How a patch reaches the field: the release travels from signing to the pump "
        "over the flows below, then the pump's agent installs it into the inactive slot "
        "only when it is verified and no therapy is running, self-tests after the reboot, "
        "and commits or rolls back on its own. Updates can therefore be shipped to every "
        "pump quickly and safely, and a failed update never leaves a pump unbootable.</p>"
        + table(
            ["flow", "from", "to", "data", "protocol", "crosses boundary", "threats"],
            rows,
        )
    )
    return View("updatability", "Updatability and patchability view", text, "\n".join(lines) + "\n")


# ------------------------------------------------------ security use cases
def _use_cases(model: ThreatModel) -> View:
    actors = sorted((el for el in model.elements if el.kind == ElementKind.ACTOR), key=_id)
    lines = ["digraph security_use_cases {", _GRAPH]
    rows: list[list[str]] = []
    for actor in actors:
        lines.append(
            f"  {quote('el-' + actor.id)} "
            + attrs({"label": actor.name, "shape": "box", "style": "bold", "id": f"el-{actor.id}"})
        )
        mine = sorted(
            (f for f in model.flows if actor.id in (f.source, f.target)), key=lambda f: f.id
        )
        for f in mine:
            controls = sorted(
                {c for t in model.threats if {f.id, actor.id} & set(t.targets) for c in t.controls}
            )
            uc = f"uc-{f.id}"
            lines.append(f"  {quote(uc)} " + attrs({"label": f.data, "shape": "ellipse", "id": uc}))
            lines.append(f"  {quote('el-' + actor.id)} -> {quote(uc)};")
            for cid in controls:
                lines.append(
                    f"  {quote('ctl-' + cid)} "
                    + attrs({"label": cid, "shape": "note", "fontsize": "8", "id": f"ctl-{cid}"})
                )
                lines.append(
                    f"  {quote(uc)} -> {quote('ctl-' + cid)} "
                    + attrs({"style": "dotted", "label": "guarded by"})
                )
            rows.append(
                [
                    e(actor.name),
                    e(f.data),
                    e(model.element(f.target if f.source == actor.id else f.source).name),
                    e(", ".join(controls)),
                ]
            )
    lines.append("}")
    text = (
        "<p>What each person or outside system does with pumpguard (an actor's flows), "
        "and the controls that make each use safe even when the actor's credentials "
        "or network are compromised.</p>" + table(["actor", "use case", "with", "controls"], rows)
    )
    return View("security-use-cases", "Security use cases view", text, "\n".join(lines) + "\n")


def _id(element: Element) -> str:
    return element.id
