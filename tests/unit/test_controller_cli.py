"""`migrategate crd` and the operator's kopf.run options."""

from migrategate.api import crd
from migrategate.controller.cli import main, parser, run_options
from migrategate.controller.settings import Settings


def test_crd_command_writes_the_generated_file(tmp_path):
    assert main(["crd", "--output", str(tmp_path)]) == 0
    assert (tmp_path / crd.CRD_FILE).read_text() == crd.render()


def test_crd_to_stdout(capsys):
    assert main(["crd", "-o", "-"]) == 0
    assert "kind: CustomResourceDefinition" in capsys.readouterr().out


def test_standalone_and_cluster_wide_by_default():
    opts = run_options(Settings())
    assert opts["standalone"] is True and opts["peering_name"] is None
    assert opts["clusterwide"] is True and opts["namespaces"] == []
    assert opts["liveness_endpoint"] == "http://0.0.0.0:8080/healthz"


def test_peering_only_when_named_and_namespaces_scope_it():
    opts = run_options(Settings(peering="migrategate", namespaces=("a",), liveness_port=0))
    assert opts["standalone"] is False and opts["peering_name"] == "migrategate"
    assert opts["clusterwide"] is False and opts["namespaces"] == ["a"]
    assert opts["liveness_endpoint"] is None


def test_operator_flags_parse():
    args = parser().parse_args(["operator", "-n", "a", "-n", "b", "--peering", "p"])
    assert args.namespaces == ["a", "b"] and args.peering == "p"
