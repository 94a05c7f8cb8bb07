"""The contract's class labels, read from configs/system.yaml when the tests load.

Module constants and helpers need them before any fixture runs. Reading the contract (never a
rendered literal) keeps the suite valid after a user renames the classes in system.yaml.
"""

from pathlib import Path

from {{ cookiecutter.package_name }}.config import load_config

CONTRACT_PATH = Path(__file__).resolve().parents[1] / "configs" / "system.yaml"
_problem = load_config(CONTRACT_PATH).problem

POS: str = _problem.positive_class
NEG: str = _problem.negative_class
