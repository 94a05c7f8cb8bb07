"""Refuse bad answers before anything is generated: one line per problem, then exit 1.

Each line names the answer and the rule it breaks, so a user can fix all of them in one go.
"""

import json
import keyword
import re
import sys

# Jinja's tojson escapes quotes, so the raw string below is valid whatever the answers hold.
ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")

# Import names a generated package must not shadow: the stack it depends on and test tooling.
DEPENDENCY_IMPORTS = {
    "bentoml",
    "fastapi",
    "great_expectations",
    "jsonschema",
    "kfp",
    "kubernetes",
    "matplotlib",
    "mlflow",
    "numpy",
    "optuna",
    "optuna_integration",
    "pandas",
    "pyarrow",
    "pydantic",
    "pytest",
    "requests",
    "rich",
    "scipy",
    "sklearn",
    "sqlalchemy",
    "starlette",
    "test",
    "tests",
    "typer",
    "uvicorn",
    "xgboost",
    "yaml",
    "src",
    "setuptools",
    "pip",
    "cookiecutter",
}
SLUG = re.compile(r"^[a-z][a-z0-9-]*$")
PACKAGE = re.compile(r"^[a-z_][a-z0-9_]*$")
CLASS_LABEL = re.compile(r"^[a-z][a-z0-9_-]*$")
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
IMAGE_PREFIX = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
# Built by concatenation because this file is itself rendered by Jinja.
TEMPLATE_MARKERS = tuple("{" + c for c in ("{", "%", "#")) + tuple(c + "}" for c in ("}", "%", "#"))
CHOICES = {
    "use_case": ["spam-email", "card-fraud", "custom"],
    "python_version": ["3.11", "3.12"],
    "retraining_schedule": ["weekly", "daily"],
    "deploy_strategy": ["argo-rollouts", "istio"],
    "ci": ["github", "none"],
}
POSITIVE_INTEGERS = ["peak_qps", "daily_volume", "serving_latency_ms", "end_to_end_latency_ms"]
RATES = ["target_precision", "target_recall", "fp_rate_alert", "precision_drop_alert"]
TEXTS = ["project_name", "description", "author_name", "business_goal"]


def _positive_int(value: str) -> int | None:
    text = str(value).strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def _rate(value: str) -> float | None:
    try:
        rate = float(value)
    except ValueError:
        return None
    return rate if 0 < rate <= 1 else None


def check(answers: dict) -> list[str]:
    """Return one message per violated rule, naming the answer."""
    errors = []

    def fail(key: str, rule: str) -> None:
        errors.append(f"{key}={answers.get(key)!r}: {rule}")

    for key in TEXTS:
        value = str(answers.get(key, ""))
        if not value.strip():
            fail(key, "must not be empty")
        elif any(marker in value for marker in TEMPLATE_MARKERS):
            fail(key, f"must not contain template markers ({' '.join(TEMPLATE_MARKERS)})")
    if not SLUG.match(answers["project_slug"]):
        fail(
            "project_slug", "must match ^[a-z][a-z0-9-]*$ (lowercase letter first, then a-z 0-9 -)"
        )
    package = answers["package_name"]
    if not PACKAGE.match(package):
        fail("package_name", "must be a lowercase Python identifier (^[a-z_][a-z0-9_]*$)")
    elif keyword.iskeyword(package) or keyword.issoftkeyword(package):
        fail("package_name", "must not be a Python keyword")
    elif package in sys.stdlib_module_names:
        fail("package_name", "must not shadow a standard-library module")
    elif package in DEPENDENCY_IMPORTS:
        fail("package_name", "must not shadow a dependency or test tooling")
    if not EMAIL.match(answers["author_email"]):
        fail("author_email", "must look like name@domain.tld")
    for key, allowed in CHOICES.items():
        if answers[key] not in allowed:
            fail(key, f"must be one of {', '.join(allowed)}")
    for key in ("positive_class", "negative_class"):
        if not CLASS_LABEL.match(answers[key]):
            fail(key, "must match ^[a-z][a-z0-9_-]*$ (it becomes a label value and a YAML key)")
    if answers["positive_class"] == answers["negative_class"]:
        fail("negative_class", "must differ from positive_class")
    integers = {key: _positive_int(answers[key]) for key in POSITIVE_INTEGERS}
    for key, value in integers.items():
        if value is None:
            fail(key, "must be a positive integer")
    serving, end_to_end = integers["serving_latency_ms"], integers["end_to_end_latency_ms"]
    if serving and end_to_end and serving > end_to_end:
        fail("serving_latency_ms", "must not exceed end_to_end_latency_ms")
    for key in RATES:
        if _rate(answers[key]) is None:
            fail(key, "must be a number in (0, 1]")
    if not DNS_1123_LABEL.match(answers["k8s_namespace"]):
        fail("k8s_namespace", "must be a DNS-1123 label (a-z 0-9 -, at most 63, alphanumeric ends)")
    if not IMAGE_PREFIX.match(answers["image_registry"]):
        fail("image_registry", "must be a lowercase registry/prefix such as ghcr.io/your-org")
    return errors


def main() -> int:
    errors = check(ANSWERS)
    for line in errors:
        print(f"ERROR: {line}", file=sys.stderr)
    if errors:
        print(f"Refused {len(errors)} answer(s); nothing was generated.", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
