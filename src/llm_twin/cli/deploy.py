"""``llm-twin deploy [--dry-run]`` and ``llm-twin undeploy``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from llm_twin.cli.errors import fail, user_errors
from llm_twin.deploy.aws import error_code
from llm_twin.deploy.plan import DeploymentPlan, build_plan, render_plan
from llm_twin.deploy.resource_manager import Action
from llm_twin.deploy.strategy import DeploymentStrategy, SagemakerHuggingfaceStrategy
from llm_twin.errors import EXIT_FAILED
from llm_twin.settings import load_settings


def _progress(message: str) -> None:
    typer.echo(message, err=True)


def build_strategy(plan: DeploymentPlan) -> DeploymentStrategy:
    """Seam for tests: the CLI's strategy on real boto3 clients."""
    return SagemakerHuggingfaceStrategy.for_plan(plan, progress=_progress)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Our errors through the one CLI handler; AWS client errors, which are not ours, named here."""
    try:
        with user_errors():
            yield
    except NoCredentialsError:
        raise fail(
            "no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)", EXIT_FAILED
        ) from None
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", "")
        raise fail(f"AWS {error.operation_name} failed: {error_code(error)}: {message}", EXIT_FAILED) from None
    except BotoCoreError as error:
        raise fail(f"AWS call failed: {error}", EXIT_FAILED) from None


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @app.command("deploy")
    def deploy(
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; make no AWS calls.")] = False,
    ) -> None:
        """Deploy the twin LLM to a SageMaker endpoint (HuggingFace TGI 2.2.0); safe to rerun."""
        with _user_errors():
            plan = build_plan(load_settings())
            if dry_run:
                typer.echo("Deployment plan (dry run: no AWS calls)")
                typer.echo(render_plan(plan))
                return
            plan.require_role()  # fail before touching AWS
            result = build_strategy(plan).deploy(plan)
        if result.action is Action.NONE:
            typer.echo(f"endpoint {result.endpoint_name} is up to date (config {result.endpoint_config_name})")
        else:
            verb = "created" if result.action is Action.CREATE else "updated"
            typer.echo(
                f"{verb} endpoint {result.endpoint_name} (config {result.endpoint_config_name}, "
                f"model {result.model_name}): InService"
            )

    @app.command("undeploy")
    def undeploy() -> None:
        """Remove the endpoint, its config, model and autoscaling; nothing deployed is fine."""
        with _user_errors():
            plan = build_plan(load_settings())
            removed = build_strategy(plan).undeploy(plan)
        for item in removed:
            typer.echo(f"removed {item}")
        if not removed:
            typer.echo(f"nothing to remove for endpoint {plan.endpoint_name}")
