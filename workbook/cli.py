"""``python -m workbook …`` — one entry point for learners, mentors and CI."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from reference_app.config import ConfigError, load_settings

from . import exercises, feedback, messenger, services
from .grade import GRADE_TIMEOUT_SECONDS
from .paths import EXERCISES_ROOT, REFERENCE_ROOT, REPO_ROOT


def _build_check() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        expected = Path(scratch) / "exercises"
        exercises.build(REFERENCE_ROOT, expected)
        problems = exercises.tree_differences(expected, EXERCISES_ROOT)
    if problems:
        print("exercises/ is not what `python -m workbook exercises build` writes:")
        print("\n".join(f"  {problem}" for problem in problems))
        print("fix: python -m workbook exercises build   (never edit exercises/ by hand in this repository)")
        return 1
    print(f"exercises/ is in sync with reference_app/ ({len(exercises.discover())} exercises)")
    return 0


def _build(force: bool) -> int:
    written = exercises.written_exercises(EXERCISES_ROOT) if EXERCISES_ROOT.is_dir() else []
    if written and not force:
        print("exercises/ holds your own code, which a build would replace with stubs:")
        print("\n".join(f"  {exercise}" for exercise in written))
        print("To start over anyway: python -m workbook exercises build --force")
        return 1
    exercises.build(REFERENCE_ROOT, EXERCISES_ROOT)
    print(f"wrote exercises/ with {len(exercises.discover())} exercise stubs")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m workbook", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    service = commands.add_parser("services", help="bring PostgreSQL, MongoDB, Redis and RabbitMQ up or down")
    service.add_argument("action", choices=["up", "down", "status"])
    app = commands.add_parser("app", help="run the app's six processes (gateway, auth, chat, content, relay, notifier)")
    app.add_argument("action", choices=["up", "down", "status", "logs"])
    app.add_argument("names", nargs="*", metavar="NAME", help="logs: only these processes (default: all)")
    app.add_argument("--app-root", type=Path, default=REFERENCE_ROOT, help="the app to run (default: reference_app/)")
    for option, default_from in (
        ("http", "http.port"),
        ("auth", "grpc.auth_port"),
        ("chat", "grpc.chat_port"),
        ("content", "grpc.content_port"),
    ):
        app.add_argument(f"--{option}-port", type=int, help=f"listen here instead of the setting {default_from}")
    app.add_argument(
        "--gateways",
        type=int,
        default=1,
        metavar="N",
        help="up: run N gateway nodes behind the load balancer haproxy, which listens on the HTTP port (default: 1, "
        "no balancer)",
    )
    app.add_argument(
        "--tls",
        action="store_true",
        help="up: HTTPS and wss:// at the edge and TLS between the processes, with a local certificate authority"
        " kept in .workbook/app/tls (trust its ca.pem in a browser or with curl --cacert)",
    )
    app.add_argument("-n", "--lines", type=int, default=40, help="logs: how many lines of each (default: %(default)s)")
    app.add_argument("-f", "--follow", action="store_true", help="logs: keep printing new lines until Ctrl+C")
    commands.add_parser("doctor", help="check Python, packages, services and ports; print a fix for each problem")

    exercise = commands.add_parser("exercises", help="build exercises/ from reference_app/, or check they agree")
    exercise.add_argument("action", choices=["build", "check"])
    exercise.add_argument("--force", action="store_true", help="build even over your own code in exercises/")

    # The learner's commands work on exercises/ unless --app-root names another copy of the app.
    learner = argparse.ArgumentParser(add_help=False)
    learner.add_argument("--app-root", type=Path, default=EXERCISES_ROOT, help="the app to check (default: exercises/)")
    check = commands.add_parser("check", parents=[learner], help="check your exercises and say what to do next")
    check.add_argument(
        "stage",
        nargs="?",
        help="a stage number such as 01, or 11 for your whole app end to end (default: the first one not done)",
    )
    check.add_argument(
        "--together",
        action="store_true",
        help="judge your whole app as it is, instead of each exercise alone in the reference app",
    )
    hint = commands.add_parser("hint", parents=[learner], help="show the next hint of one exercise")
    hint.add_argument("exercise_id", metavar="ID", help="an exercise id such as 01.2")
    hint.add_argument("--all", action="store_true", help="show every hint of the exercise at once")
    reset = commands.add_parser(
        "reset", parents=[learner], help="put one exercise back to its stub (your version is saved first)"
    )
    reset.add_argument("exercise_id", metavar="ID", help="an exercise id such as 01.2")
    commands.add_parser("status", parents=[learner], help="your progress, stage by stage")
    commands.add_parser("watch", parents=[learner], help="re-check the current stage every time you save a file")
    catch_up = commands.add_parser(
        "catch-up", parents=[learner], help="fill every exercise before STAGE with the reference code"
    )
    catch_up.add_argument("stage", metavar="STAGE")

    grade = commands.add_parser(
        "grade", help="grade learners' copies; a Markdown and a JSON report each, and a class summary for several"
    )
    grade.add_argument(
        "paths", nargs="+", type=Path, metavar="CLONE", help="a learner's clone, its exercises/, or a folder of clones"
    )
    grade.add_argument(
        "--extra-tests", type=Path, help="a folder of your own tests, marked with the exercise they grade"
    )
    grade.add_argument("--no-together", action="store_true", help="skip the together column (faster)")
    grade.add_argument(
        "--e2e", action="store_true", help="also start each learner's whole app and run the end-to-end tests (stage 11)"
    )
    grade.add_argument("--out", type=Path, default=Path("."), help="where to write the reports (default: here)")
    grade.add_argument("--stage", action="append", help="grade only this stage (repeat for several; default: all)")
    grade.add_argument(
        "--timeout",
        type=float,
        default=GRADE_TIMEOUT_SECONDS,
        help="seconds allowed for each exercise (default: %(default)s)",
    )
    similar = commands.add_parser(
        "similar", help="find exercise regions that look copied, across learners' clones and from the reference"
    )
    similar.add_argument("paths", nargs="+", type=Path, metavar="CLONE", help="learners' clones, or a folder of clones")
    similar.add_argument("--threshold", type=float, help="report pairs scoring at least this (0-1; default 0.7)")
    similar.add_argument("--out", type=Path, help="also write the Markdown report to this file")
    return top


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    try:
        return _dispatch(arguments)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2


def _dispatch(arguments: argparse.Namespace) -> int:
    match arguments.command:
        case "services":
            action = {"up": services.up, "down": services.down, "status": services.status}[arguments.action]
            return 0 if action() is not False else 1
        case "app":
            return 0 if _app(arguments) else 1
        case "doctor":
            from .doctor import doctor

            return 0 if doctor() else 1
        case "exercises":
            return _build(arguments.force) if arguments.action == "build" else _build_check()
        case "check":
            stage = _stage(arguments.stage) if arguments.stage else None
            return 0 if feedback.check(stage, arguments.app_root, together=arguments.together) else 1
        case "hint":
            feedback.hint(arguments.exercise_id, show_all=arguments.all, app_root=arguments.app_root)
        case "reset":
            feedback.reset(arguments.exercise_id, arguments.app_root)
        case "status":
            feedback.status(arguments.app_root)
        case "watch":
            try:
                feedback.watch(arguments.app_root)
            except KeyboardInterrupt:
                print("\nStopped watching.")
        case "catch-up":
            feedback.catch_up(_stage(arguments.stage), arguments.app_root)
        case "grade":
            from .grade import grade

            stages = {_stage(stage) for stage in arguments.stage} if arguments.stage else None
            if arguments.extra_tests is not None and not arguments.extra_tests.is_dir():
                sys.exit(f"--extra-tests {arguments.extra_tests} is not a folder")
            grade(
                arguments.paths,
                arguments.out,
                arguments.timeout,
                stages,
                extra_tests=arguments.extra_tests.resolve() if arguments.extra_tests else None,
                together=not arguments.no_together,
                end_to_end=arguments.e2e,
            )
        case "similar":
            from .grade import clones_in
            from .similar import DEFAULT_THRESHOLD, find_similar, format_pairs

            threshold = DEFAULT_THRESHOLD if arguments.threshold is None else arguments.threshold
            report = format_pairs(find_similar(clones_in(arguments.paths), threshold))
            print(report)
            if arguments.out:
                arguments.out.write_text(report, encoding="utf-8")
    return 0


def _app(arguments: argparse.Namespace) -> bool:
    match arguments.action:
        case "up":
            if arguments.gateways < 1:
                sys.exit(f"--gateways {arguments.gateways}: the app needs at least one gateway")
            return messenger.command_up(
                arguments.app_root.resolve(), _ports(arguments), gateways=arguments.gateways, tls=arguments.tls
            )
        case "down":
            return messenger.command_down()
        case "status":
            return messenger.command_status()
        case _:
            return messenger.command_logs(arguments.names, arguments.lines, arguments.follow)


def _ports(arguments: argparse.Namespace) -> messenger.Ports | None:
    """The ports given on the command line, the others from the settings; None when none was given."""
    given = {name: getattr(arguments, f"{name}_port") for name in ("http", "auth", "chat", "content")}
    if all(port is None for port in given.values()):
        return None
    defaults = messenger.Ports.from_settings(load_settings(REPO_ROOT / ".env"))
    return messenger.Ports(**{name: port or getattr(defaults, name) for name, port in given.items()})


def _stage(stage: str) -> str:
    normalised = stage.zfill(2)
    if normalised not in feedback.stages():
        sys.exit(f"There is no stage {stage}. The stages with exercises are: {', '.join(feedback.stages())}")
    return normalised
