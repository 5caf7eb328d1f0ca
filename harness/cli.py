"""The ``harness`` command: a thin front end over the library (same code as the fixtures)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import CatalogueError, HarnessError
from harness.paths import history_db, other_vm_project_dirs
from harness.vmoptions import BUILD_MODES, LEAK_CHECK_MODES, OPTIONS

if TYPE_CHECKING:
    from harness.oops.detect import Report


def _catalogue(args: argparse.Namespace):
    from harness.boxes import load_catalogue

    return load_catalogue(Path(args.boxes) if args.boxes else None, project_dir=Path.cwd())


def _named_boxes(args: argparse.Namespace):
    """The boxes ``args.names`` names (boxes or matrices), else the default box."""
    catalogue = _catalogue(args)
    return catalogue.matrix(",".join(args.names)) if args.names else [catalogue.get(None)]


def cmd_box_build(args: argparse.Namespace) -> int:
    from harness.boxbuild import BoxBuild

    for box in _named_boxes(args):
        BoxBuild(box, mirror=args.mirror).build(force=args.force, rootfs_only=args.rootfs_only)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from harness.buildlane import build_across, lane_grid
    from harness.paths import state_dir

    module_dir = Path(args.module_dir).resolve()
    if not (module_dir / "Makefile").is_file() and not (module_dir / "Kbuild").is_file():
        print(f"harness build: {args.module_dir} has no Makefile or Kbuild: give the module's "
              "source folder", file=sys.stderr)
        return 2
    catalogue = _catalogue(args)
    boxes = catalogue.matrix(args.box or args.matrix or catalogue.default)
    results = build_across(module_dir, boxes, state_dir(Path.cwd()) / "build-lane",
                           jobs=args.jobs, timeout=args.timeout)
    width = max(len(b.name) for b in boxes)
    kernel_width = max(len(r.kernel or "-") for r in results)
    for result in results:
        first = result.first_diagnostic or ""
        print(f"{result.box.name:{width}}  {result.kernel or '-':{kernel_width}}  "
              f"{result.outcome:12}  {result.seconds:5.1f} s  {first}".rstrip())
    grid = lane_grid(module_dir, results)
    written = grid.write(Path(args.out))
    built = sum(r.outcome == "passed" for r in results)
    print(f"{built} of {len(results)} boxes built {module_dir.name}; "
          f"grid: {written['html']}, {written['json']}")
    return 1 if grid.failed else 0


def cmd_box_digest(args: argparse.Namespace) -> int:
    from harness.boxbuild import BUILDER_VERSION

    boxes = _named_boxes(args)
    # Cloud boxes have no recipe: their name is what identifies them. Several boxes (or a
    # matrix): one key for all of them.
    print("-".join(box.recipe.digest(BUILDER_VERSION) if box.recipe
                   else box.vagrant_box.replace("/", "_") for box in boxes))
    return 0


def cmd_box_list(args: argparse.Namespace) -> int:
    from harness.boxbuild import box_kernel_release

    catalogue = _catalogue(args)
    print(f"  {'box':24} {'source':6} {'series':7} {'kernel built here':28} description")
    for name, box in catalogue.boxes.items():
        mark = "*" if name == catalogue.default else " "
        built = box_kernel_release(box) or "-"
        print(f"{mark} {name:24} {box.source:6} {box.kernel_series or '-':7} {built:28} "
              f"{box.description}")
    for name, members in catalogue.matrices.items():
        print(f"matrix {name}: {', '.join(members)}")
    return 0


def _vm(args: argparse.Namespace, project_dir: Path | None = None):
    """The VM of the current folder (or of ``project_dir``, e.g. a worker's, with the current
    folder's catalogue)."""
    from harness.session import VMOptions, make_vm

    return make_vm(VMOptions.from_args(args), project_dir or Path.cwd(), catalogue_dir=Path.cwd())


def cmd_doctor(args: argparse.Namespace) -> int:
    from harness import doctor

    box = _catalogue(args).get(args.box)
    checks = doctor.run_checks(box, fix=args.fix)
    print(doctor.report(checks))
    failed = [c for c in checks if c.failed]
    print(f"{len(failed)} problem(s)" if failed else "everything a run needs is here")
    return 1 if failed else 0


def cmd_vm(args: argparse.Namespace) -> int:
    from harness.cleanstate import ready_vm

    vm = _vm(args)
    action = args.vm_command
    if action == "up":
        ready_vm(vm)
        result = vm.transport().run("uname -r", timeout=30).check()
        print(f"guest kernel: {result.stdout.strip()}")
    elif action == "status":
        state = vm.status()
        if state != "running" and vm.has_snapshot():
            state += " (saved: the next run resumes it from its clean snapshot)"
        print(state)
    elif action == "save":
        vm.power_off()
        print("VM powered off; its clean snapshot is kept for the next run" if vm.has_snapshot()
              else "VM powered off (it has no clean snapshot: the next run boots it)")
    elif action == "ssh":
        if not vm.is_running():  # e.g. saved by the last pytest run: resume it first
            ready_vm(vm)
        result = vm.transport().run(" ".join(args.remote_command) or "uname -a", timeout=600)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.exit_status
    elif action == "destroy":
        for what, folder in other_vm_project_dirs(vm.project_dir):
            if what.startswith("box "):
                args.box = folder.name  # @pytest.mark.vm_box's VM of that box
            _vm(args, folder).destroy()
            print(f"VM of {what} destroyed")
        vm.destroy()
        print("VM destroyed")
    return 0


def _positive_int(text: str) -> int:
    """argparse's type for a count of processes or VMs: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too few: give 1 or more")
    return value


_OOPS_JSON_KEYS = ("title", "kind", "function", "module", "module_function", "location",
                   "corrupted", "panicked", "start_line", "end_line")


def _oops_json_row(report: Report) -> str:
    # The keys alone: Report.to_dict would also parse and format every frame of every report,
    # which these keys never show. One report a line, each by json's C encoder (indent= would
    # use the pure-Python one).
    return json.dumps({key: getattr(report, key) for key in _OOPS_JSON_KEYS})


def _oops_summary(report: Report) -> str:
    return report.summary() + "\n"


def cmd_oops(args: argparse.Namespace) -> int:
    from harness.oops.scan import detect_rendered

    try:
        data = Path(args.file).read_bytes() if args.file != "-" else sys.stdin.buffer.read()
    except OSError as err:
        print(f"harness oops: cannot read {args.file}: {err.strerror}", file=sys.stderr)
        return 2
    rows = detect_rendered(data, _oops_json_row if args.json else _oops_summary, args.jobs)
    if args.json:
        print("[\n" + ",\n".join("  " + row for row in rows) + "\n]" if rows else "[]")
    elif not rows:
        print("no crash report found")
    else:
        print("\n".join(rows))
    return 1 if rows else 0


def _parse_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--param takes NAME=VALUE, got {pair!r}")
        params[name] = value
    return params


def cmd_run(args: argparse.Namespace) -> int:
    """The blog's loop for a person: sync, build, insmod, dmesg, rmmod, dmesg."""
    from harness.cleanstate import ready_vm
    from harness.errors import BuildError, GuestUnreachable
    from harness.kmod import KernelCrashed, ModuleError, ModuleGroup, ModuleHung
    from harness.session import HarnessSession, make_guest

    try:
        params = _parse_params(args.param)
    except ValueError as err:
        print(f"harness run: {err}", file=sys.stderr)
        return 2
    source = Path(args.module_dir)
    if not source.is_dir():
        print(f"harness run: {source} is not a folder (give the module's source folder)",
              file=sys.stderr)
        return 2
    vm = ready_vm(_vm(args))
    session = HarnessSession(vm, make_guest(vm, build_mode=args.build),
                             leak_check_mode="off" if args.keep_loaded else args.leak_check)
    run = session.new_test(f"harness-run-{source.resolve().name}")
    module = run.module(source)
    printed = 0

    def show_new_lines(title: str) -> None:
        nonlocal printed
        assert run.capture is not None
        records = run.capture.refresh().records
        print(f"--- {title} ---")
        for record in records[printed:]:
            print(record.console_line())
        if len(records) == printed:
            print("(no new kernel lines)")
        printed = len(records)

    error: BaseException | None = None
    try:
        build = module.build()
        sync = module.last_sync
        print(f"synced {len(sync.sent) if sync else 0} file(s); built {', '.join(build.ko_files)}"
              f"{' (reused an identical earlier build)' if build.reused else ''}"
              f"; {len(build.warnings)} warning(s)")
        if session.guest.builder.decision:
            print(session.guest.builder.decision)
        for warning in build.warnings:
            print(f"  {warning}")
        # Every module the folder builds, each after those it depends on.
        group = ModuleGroup.of(module)
        if params and len(group) > 1:
            print(f"harness run: --param needs a folder with one module; {source} builds "
                  f"{', '.join(group.names)}", file=sys.stderr)
            return 2
        for member in group:
            member.load(**params)
            show_new_lines(f"kernel lines after insmod {member.name}")
        if not args.keep_loaded:
            for member in reversed(group.modules):
                member.unload()
                show_new_lines(f"kernel lines after rmmod {member.name}")
    except BuildError as err:
        print(err, file=sys.stderr)
        return 1
    except (KernelCrashed, ModuleHung, GuestUnreachable) as err:
        error = err
    except ModuleError as err:
        print(f"harness run: {err}", file=sys.stderr)
        return 1
    verdict = run.finish(error) if not args.keep_loaded or error else None
    if verdict is not None and verdict.kernel_broken:
        print(verdict.message(), file=sys.stderr)
        print(session.restore_clean(archive_as=run.name), file=sys.stderr)
        return 1
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    from harness.grade.runner import grade
    from harness.grade.spec import SpecError
    from harness.session import VMOptions

    vm_args = [*VMOptions.from_args(args).pytest_args(), f"--vm-build={args.build}"]
    if args.keep_vm:
        vm_args.append("--vm-keep")
    try:
        results = grade(Path(args.submissions), Path(args.spec), Path(args.out), jobs=args.jobs,
                        regrade=args.regrade, vm_args=vm_args)  # the VM of the current folder
    except (SpecError, ValueError) as err:
        print(f"harness grade: {err}", file=sys.stderr)
        return 2
    for r in sorted(results, key=lambda r: r.student):
        print(f"{r.student:28} {r.score:6g} / {r.max_score:g}  {r.status}"
              f"{'  ' + r.reason if r.reason else ''}")
    print(f"reports in {args.out}: gradebook.csv, junit.xml, gradescope/, report.html")
    return 1 if any(r.status == "incomplete" for r in results) else 0


def _commit_of_checkout() -> str | None:
    """The commit a run tested: CI's word ($GITHUB_SHA), else this checkout's HEAD."""
    import os
    import subprocess

    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        found = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                               timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if found.returncode != 0:
        return None
    return found.stdout.strip() or None


def cmd_history_add(args: argparse.Namespace) -> int:
    from harness.nightly.history import History, read_run

    run = read_run([Path(name) for name in args.results])  # every file readable, or nothing
    run.commit = args.commit or _commit_of_checkout()
    history = History(Path(args.db))
    try:
        run_id = history.add(run)
    finally:
        history.close()
    print(f"{run.source}: " + (f"added as run {run_id}: {len(run.results)} results" if run_id
                               else "already in the database: nothing added"))
    return 0


def cmd_history_report(args: argparse.Namespace) -> int:
    from harness.nightly.dashboard import Dashboard
    from harness.nightly.history import History

    if not Path(args.db).exists():
        raise HarnessError(f"{args.db}: no history database there; add runs first with "
                           "`harness history add junit.xml`")
    history = History(Path(args.db))
    try:
        page = Dashboard.of(history).html(last=args.last)
    finally:
        history.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(page, encoding="utf-8")
    print(f"dashboard: {out / 'index.html'} ({len(page.encode()) // 1024} KiB)")
    return 0


def _add_vm_options(parser: argparse.ArgumentParser) -> None:
    for option in OPTIONS:  # the same table as pytest's --vm-* options
        parser.add_argument(option.cli, **option.parser_kwargs())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", description="Test Linux kernel modules in real virtual machines."
    )
    parser.add_argument("--boxes", help="box catalogue (default: ./boxes.yaml or the packaged one)")
    sub = parser.add_subparsers(dest="command", required=True)

    box = sub.add_parser("box", help="the box catalogue and box building")
    box_sub = box.add_subparsers(dest="box_command", required=True)
    build = box_sub.add_parser("build", help="build a local box from Debian's packages (root)")
    build.add_argument("names", nargs="*", metavar="NAME",
                       help="catalogue entries or a named matrix, one after the other "
                       "(default: the default box)")
    build.add_argument("--mirror", help="Debian archive URL (default: the host's apt sources)")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    build.add_argument("--rootfs-only", action="store_true",
                       help="only the root filesystem (headers and compiler): enough for "
                       "`harness build`, no bootable image")
    build.set_defaults(func=cmd_box_build)
    digest = box_sub.add_parser("digest", help="print the hash of a box's recipe (a cache key)")
    digest.add_argument("names", nargs="*", metavar="NAME",
                        help="catalogue entries or a named matrix (default: the default box)")
    digest.set_defaults(func=cmd_box_digest)
    listing = box_sub.add_parser("list", help="list the catalogue")
    listing.set_defaults(func=cmd_box_list)

    lane = sub.add_parser("build", help="compile a module against several boxes' kernels on "
                          "the host, without booting (the build-only lane)")
    lane.add_argument("module_dir", help="the module's source folder (with its Makefile)")
    lane.add_argument("--box", help="boxes, comma-separated, or a matrix's name (default: the "
                      "default box)")
    lane.add_argument("--matrix", help="a named set of boxes from boxes.yaml's matrices")
    lane.add_argument("--jobs", type=_positive_int, default=2, help="builds at once (default: 2)")
    lane.add_argument("--timeout", type=float, default=300.0,
                      help="seconds one build may take (default: 300)")
    lane.add_argument("--out", default="vm-matrix",
                      help="where matrix.json and matrix.html go (default: ./vm-matrix)")
    lane.set_defaults(func=cmd_build)

    doc = sub.add_parser("doctor", help="check everything a run needs and say how to fix it")
    doc.add_argument("--box", help="catalogue entry to check for (default: the default box)")
    doc.add_argument("--fix", action="store_true",
                     help="start libvirt's daemons and create its default pool when missing")
    doc.set_defaults(func=cmd_doctor)

    oops = sub.add_parser("oops", help="find crash reports in a saved kernel log")
    oops.add_argument("file", help="dmesg output (also -T, -x), a serial console capture, "
                      "/dev/kmsg records, journalctl -k output or /var/log/kern.log "
                      "(- for standard input)")
    oops.add_argument("--json", action="store_true", help="print a JSON list of reports")
    oops.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                      help="processes reading a large log (default: one a CPU)")
    oops.set_defaults(func=cmd_oops)

    run = sub.add_parser("run", help="sync, build, insmod, show dmesg, rmmod, show dmesg")
    run.add_argument("module_dir", help="the module's source folder (with its Makefile)")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="module parameter (repeatable)")
    run.add_argument("--keep-loaded", action="store_true", help="do not rmmod at the end")
    run.add_argument("--leak-check", default="auto", choices=list(LEAK_CHECK_MODES),
                     help="after rmmod, report memory the module never freed: auto (kmemleak "
                     "when the kernel has it, else the kmem ledger), kmemleak, ledger, off")
    run.add_argument("--build", default="auto", choices=list(BUILD_MODES),
                     help="where to compile: host (in the box's root filesystem, the guest's "
                     "own headers and gcc), guest, or auto (host when it matches the guest)")
    _add_vm_options(run)
    run.set_defaults(func=cmd_run)

    grade = sub.add_parser("grade", help="grade a folder of homework submissions")
    grade.add_argument("submissions", help="folder with one folder, .zip or .tar.gz per student")
    grade.add_argument("--spec", required=True, help="the assignment's spec (YAML)")
    grade.add_argument("--out", required=True, help="where results and reports go")
    grade.add_argument("--jobs", type=_positive_int, default=1, help="VMs grading in parallel")
    grade.add_argument("--regrade", action="store_true", help="grade everyone again")
    grade.add_argument("--keep-vm", action="store_true", help="leave the VM(s) running")
    grade.add_argument("--build", default="auto", choices=list(BUILD_MODES),
                       help="where to compile (see `harness run --help`)")
    _add_vm_options(grade)
    grade.set_defaults(func=cmd_grade)

    history = sub.add_parser("history", help="the nightly's history: add runs, draw the "
                             "dashboard")
    history_sub = history.add_subparsers(dest="history_command", required=True)
    add = history_sub.add_parser("add", help="store a run (its JUnit XML files from pytest "
                                 "--junitxml, and a matrix.json) in the history database")
    add.add_argument("results", nargs="+", help="the run's JUnit XML and matrix.json files "
                     "(a nightly's shards together: one run)")
    add.add_argument("--commit", help="the commit tested (default: $GITHUB_SHA, else the "
                     "current checkout's HEAD)")
    report = history_sub.add_parser("report", help="write the dashboard (one static HTML page)")
    report.add_argument("--out", required=True, help="folder for index.html")
    report.add_argument("--last", type=int, default=20,
                        help="results shown per test (default: 20 runs)")
    for action in (add, report):
        action.add_argument("--db", default=str(history_db(Path("."))),
                            help="the database (default: .harness/history.sqlite)")
    add.set_defaults(func=cmd_history_add)
    report.set_defaults(func=cmd_history_report)

    vm = sub.add_parser("vm", help="the test VM: up, status, ssh, save, destroy")
    vm_sub = vm.add_subparsers(dest="vm_command", required=True)
    for name, text in (("up", "boot (or reuse) the VM and print the guest kernel"),
                       ("status", "the VM's state"), ("ssh", "run a command in the guest"),
                       ("save", "power the VM off, keeping its clean snapshot to resume from"),
                       ("destroy", "destroy the VM (and the worker VMs), with their snapshots")):
        action = vm_sub.add_parser(name, help=text)
        _add_vm_options(action)
        if name == "ssh":
            action.add_argument("remote_command", nargs=argparse.REMAINDER)
        action.set_defaults(func=cmd_vm)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CatalogueError as err:
        print(f"harness: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130
    except HarnessError as err:
        print(f"harness: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
