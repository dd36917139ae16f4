"""The DAG: every stage that scales out on one node or as a multi-node job, the rest on one node, wired in flow
order; the checked-in YAML is current."""

import yaml

from olmoflow.flow.pipeline import REPO_ROOT, compile_ir
from olmoflow.registry import CHECKPOINT_STAGES, LAST, REGISTRY


def test_compiled_pipeline_is_current(tmp_path):
    fresh = compile_ir(tmp_path / "model_flow.yaml")
    checked_in = REPO_ROOT / "pipelines" / "model_flow.yaml"
    assert checked_in.read_text() == open(fresh).read(), "pipelines/model_flow.yaml is stale: run `olmoflow compile`"


def test_dag_has_each_stage_on_one_node_or_as_a_job_in_flow_order(tmp_path):
    spec = next(yaml.safe_load_all(open(compile_ir(tmp_path / "p.yaml"))))  # then the platform spec
    dags = {"root": spec["root"]["dag"], **{k: c["dag"] for k, c in spec["components"].items() if "dag" in c}}
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["config"]["defaultValue"] == "tiny" and params["stop"]["defaultValue"] == LAST
    # every stage that scales out: a branch group whose two branches are "on one node" (nodes_X == 1) and "as a job"
    sections = {s.name: s.section for s in REGISTRY}
    branches = {}
    for d in dags.values():
        for t in d["tasks"].values():
            name, cond = t["taskInfo"]["name"], t.get("triggerPolicy", {}).get("condition", "")
            if name.endswith(" on one node"):
                stage = name.removesuffix(" on one node")
                assert cond == f"int(inputs.parameter_values['pipelinechannel--nodes_{sections[stage]}'])" \
                               " == 1", stage
                branches.setdefault(stage, []).append("one")
            elif name.endswith(" as a multi-node job"):
                branches.setdefault(name.removesuffix(" as a multi-node job"), []).append("job")
    assert branches == {s.name: ["one", "job"] for s in REGISTRY if s.multi_node}
    nodes = {k for k in spec["root"]["inputDefinitions"]["parameters"] if k.startswith("nodes_")}
    assert nodes == {f"nodes_{s.section}" for s in REGISTRY if s.multi_node}
    # the top level runs the stages in flow order: each group waits for the one before it
    root = dags["root"]["tasks"]
    # ... but trace-index, which reads only curate's dataset, runs beside them on a CPU pod; every checkpoint stage
    # is evaluated by its own eval task (it also reads the index), and model-flow waits for all the evaluations
    assert root.pop("trace-index")["dependentTasks"] == [next(k for k in root if k.startswith("condition-branches"))]
    evals = {k: t for k, t in root.items() if k.startswith("evaluate")}
    assert sorted(t["taskInfo"]["name"] for t in evals.values()) == sorted(f"eval-{s}" for s in CHECKPOINT_STAGES)
    for t in evals.values():
        assert t["inputs"]["artifacts"]["index"]["taskOutputArtifact"] == {
            "outputArtifactKey": "index", "producerTask": "trace-index"}
        of = t["inputs"]["parameters"]["of"]["runtimeValue"]["constant"]
        assert t["taskInfo"]["name"] == f"eval-{of}"
        t["dependentTasks"].remove("trace-index")
    gather = root.pop("model-flow")
    assert sorted(gather["dependentTasks"]) == sorted(evals)
    assert {k: a["taskOutputArtifact"]["producerTask"] for k, a in gather["inputs"]["artifacts"].items()} == {
        f"eval_{s.replace('-', '_')}": k for k, t in evals.items() for s in CHECKPOINT_STAGES
        if t["taskInfo"]["name"] == f"eval-{s}"}
    # the rest is a chain in flow order, each evaluation hanging off its stage
    chain = {k: t for k, t in root.items() if k not in evals}
    order, done = [], set()
    while len(order) < len(chain):
        ready = sorted(k for k, t in chain.items() if k not in done and set(t.get("dependentTasks", [])) <= done)
        assert len(ready) == 1, ready  # a chain: exactly one task can go next
        order.append(ready[0])
        done.add(ready[0])
    # the last is RLVR's branch group (every checkpoint stage now scales out: a group per stage)
    assert order[-1].startswith("condition-branches") and len(order) == 1 + len(CHECKPOINT_STAGES)
    for t in evals.values():  # the dataset's task and its checkpoint's
        first, made = sorted(t["dependentTasks"], key=order.index)
        assert first == order[0] and made in order[1:]
    assert all(not t.get("cachingOptions", {}).get("enableCache", False)
               for d in dags.values() for t in d["tasks"].values())
