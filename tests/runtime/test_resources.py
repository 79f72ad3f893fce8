"""One ResourceSpec parses every form of worker resources and formats them for messages."""

from __future__ import annotations

import pytest

from omfs.compute.resources import ResourceSpec
from omfs.errors import ConfigError


def test_every_form_parses_to_the_same_resources():
    want = {"gpu": 1, "memory": 16e9}
    assert ResourceSpec.of("gpu", memory=16e9).as_dict() == want
    assert ResourceSpec.from_attribute({"label": "gpu", "memory": 16e9}).as_dict() == want
    assert ResourceSpec.from_options(["gpu", "memory=16e9"]).as_dict() == want
    assert ResourceSpec.parse("gpu, memory=16e9").as_dict() == want
    assert ResourceSpec.from_attribute("gpu").as_dict() == {"gpu": 1}
    assert not ResourceSpec.from_attribute(None)


def test_formats_for_dask_and_for_messages():
    spec = ResourceSpec({"memory": 16e9, "gpu": 1})
    assert spec.text() == "gpu=1,memory=1.6e+10"
    assert spec.text(sort=False) == "memory=1.6e+10,gpu=1"
    assert spec.describe() == "gpu=1, memory=1.6e+10"
    assert ResourceSpec().describe() == "no resources" and ResourceSpec().text() == ""


@pytest.mark.parametrize(
    ("text", "why"),
    [("gpu=x", "must be a number"), ("gpu=0", "must be positive"), ("g pu", "NAME or NAME=")],
)
def test_a_bad_worker_resource_is_refused_by_name(text, why):
    with pytest.raises(ConfigError, match=f"Invalid worker resource {text!r}: .*{why}"):
        ResourceSpec.parse(text)


def test_bad_requirements_are_refused():
    with pytest.raises(ValueError, match="must be a positive number"):
        ResourceSpec.of(gpu=-1)
    with pytest.raises(ValueError, match="the amount must be a number"):
        ResourceSpec.from_options(["gpu=lots"])
    with pytest.raises(ValueError, match="is not understood"):
        ResourceSpec.from_attribute(3)


def test_routing_advice_depends_on_who_runs_the_cluster():
    """`dask worker ADDRESS` for a scheduler of the user's own; `om cluster start --worker`
    where omfs runs the cluster (restarting the background one); the model's attribute named
    when the requirement came from it."""
    from omfs.compute._routing import Route, check_satisfiable
    from omfs.errors import ResourceUnavailableError

    workers = [{"address": "tcp://w:1", "name": "w1", "resources": {"cpu": 1}}]

    def advice(route):
        with pytest.raises(ResourceUnavailableError) as info:
            check_satisfiable(workers, {"gpu": 1}, "fit of model 'm'", route)
        return str(info.value), info.value.cli_message()

    text, cli = advice(Route("external", "tcp://sched:8786"))
    assert 'Start one with `dask worker tcp://sched:8786 --resources "gpu=1"`, or change' in text
    assert text.endswith("or change require().") and cli.endswith("or change --require.")
    text, _ = advice(Route("private"))
    assert "Give the cluster omfs starts such a worker: `om cluster start --worker gpu=1`" in text
    text, cli = advice(Route("background", from_model={"label": "gpu"}))
    assert "`om cluster stop && om cluster start --worker gpu=1`" in text
    assert "dask worker" not in text
    assert text.endswith("or runtime.require() for any worker.")
    assert cli.endswith(
        "--worker gpu=1`. The requirement comes from the model's attributes (require={'label': "
        "'gpu'}): override it with --require LABEL, or --require none for any worker."
    )
    assert ResourceSpec.from_options(["none"]).as_dict() == {}
