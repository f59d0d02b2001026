"""Measure every peer on the same systems against the same converged reference.

    python benchmarks/peers/run.py --sizes 512 4096 32768 --systems rocksalt liquid \
        --accuracy 1e-4 --rounds 2 \
        --venv openmm_cpu=/work/venvs/openmm --venv torchpme05=/work/venvs/tpme05 \
        --venv jax_pme=/work/venvs/jaxpme --venv alchemi_pme=/work/venvs/alchemi

Run it with the Python that has this repository's torchpme (it computes the
references and runs ``ours``). Each peer script runs in its own process with the
interpreter of its virtual environment (``--venv NAME=PATH``, PATH a venv folder
or a python executable; or ``--config FILE.json`` with ``{"venvs": {NAME: PATH}}``).
For every system and size the peers run one after the other, round-robin, the
starting peer rotating between rounds, ``--rounds`` times; the best (lowest)
median time per peer is kept. The driver computes the relative RMS force error
against the cached reference (``reference.py``). Peers with an accuracy knob that
is not the tuners' absolute accuracy (OpenMM's ``ewaldErrorTolerance``, ALCHEMI's
estimator ``accuracy``) are calibrated in the first round: if the measured error
exceeds the target, the knob is lowered by the ratio (×0.8) and the run repeated,
up to ``--calibrate`` times; the knob found is reused for the later rounds and
the next size. Writes ``results.json``, ``table.md`` and ``time_vs_n.png`` to
``--out`` (default ``benchmarks/peers/results/``).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402

PEERS = {
    # name: (script, default venv, has a tolerance knob to calibrate)
    "ours": ("ours.py", None, False),
    "openmm_cpu": ("openmm_cpu.py", "/work/venvs/openmm", True),
    "torchpme05": ("torchpme05.py", "/work/venvs/tpme05", False),
    "jax_pme": ("jax_pme.py", "/work/venvs/jaxpme", False),
    "alchemi_pme": ("alchemi_pme.py", "/work/venvs/alchemi", True),
}
# peers known not to run here, with the reason (listed in the table as such)
NOT_AVAILABLE = {}


def python_of(path):
    if path is None:
        return sys.executable
    if os.path.isdir(path):
        return os.path.join(path, "bin", "python")
    return path


def _limit_memory(gigabytes):
    """Cap the peer's address space (RLIMIT_AS) so that a runaway tuner fails with
    MemoryError instead of taking the machine down."""
    import resource

    def apply():
        if gigabytes > 0:
            limit = int(gigabytes * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def run_peer(python, script, system_path, out, args, extra, log):
    cmd = [
        python, os.path.join(HERE, script), system_path, out,
        "--accuracy", str(args.accuracy), "--repeats", str(args.repeats),
        "--warmup", str(args.warmup), "--threads", str(args.threads),
        "--cutoff", str(args.cutoff), *extra,
    ]  # fmt: skip
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
        OPENMM_CPU_THREADS=str(args.threads),
    )
    env.pop("PYTHONPATH", None)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.timeout, env=env,
            preexec_fn=_limit_memory(args.mem_limit_gb),
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None, f"timed out after {args.timeout} s"
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith("PEER_RESULT "):
            result = json.loads(line[len("PEER_RESULT ") :])
            result["wall_s"] = wall
            return result, None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    named = [line for line in lines if "Error" in line or "error:" in line]
    tail = (named[-1:] if named else []) + lines[-2:]
    log(f"    failed (rc {proc.returncode}): {' | '.join(tail)}")
    return None, f"rc {proc.returncode}: " + " | ".join(tail)[-300:]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peers", nargs="+", default=list(PEERS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 4096])
    parser.add_argument("--systems", nargs="+", default=["rocksalt"])
    parser.add_argument(
        "--accuracy", type=float, default=1e-4, help="target relative RMS force error"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--cutoff", type=float, default=6.0, help="real-space cutoff for every peer, Å"
    )
    parser.add_argument(
        "--calibrate", type=int, default=4, help="max tolerance retries"
    )
    parser.add_argument("--timeout", type=float, default=1200.0, help="per peer run, s")
    parser.add_argument(
        "--mem-limit-gb",
        type=float,
        default=18.0,
        help="address-space cap per peer run",
    )
    parser.add_argument("--venv", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--config", help='JSON file {"venvs": {NAME: PATH}}')
    parser.add_argument("--cache", default=reference.CACHE)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the records already in OUT/results.json (other sizes/systems)",
    )
    args = parser.parse_args()

    venvs = {name: spec[1] for name, spec in PEERS.items()}
    if args.config:
        with open(args.config) as f:
            venvs.update(json.load(f).get("venvs", {}))
    for item in args.venv:
        name, path = item.split("=", 1)
        venvs[name] = path
    os.makedirs(args.out, exist_ok=True)
    forces_dir = os.path.join(args.out, "forces")
    os.makedirs(forces_dir, exist_ok=True)
    logfile = open(os.path.join(args.out, "run.log"), "a")

    def log(msg):
        print(msg, flush=True)
        logfile.write(msg + "\n")
        logfile.flush()

    log(
        f"=== {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} {' '.join(sys.argv)}"
    )
    unknown = [p for p in args.peers if p not in PEERS]
    if unknown:
        raise SystemExit(f"unknown peers {unknown}; known: {list(PEERS)}")
    peers = list(args.peers)
    if "jax_pme" in peers and "ours" in peers:
        # jax_pme takes the parameters ours tuned: ours first in every round
        peers.remove("ours")
        peers.insert(0, "ours")
    failures = {}
    for name in peers:
        if name in NOT_AVAILABLE:
            failures[name] = NOT_AVAILABLE[name]
            continue
        python = python_of(venvs.get(name))
        if not os.path.exists(python):
            failures[name] = f"no interpreter at {python} (venv not installed)"
    runnable = [p for p in peers if p not in failures]

    results = []  # one record per (system, n, peer)
    previous = os.path.join(args.out, "results.json")
    if args.append and os.path.exists(previous):
        with open(previous) as f:
            old = json.load(f)
        redo = {(s, n, p) for s in args.systems for n in args.sizes for p in args.peers}
        results = [
            r for r in old["results"] if (r["system"], r["n"], r["peer"]) not in redo
        ]
        failures = {**old["meta"].get("failures", {}), **failures}
    tolerance = {}  # (peer, system) -> knob
    for system_name in args.systems:
        for n in args.sizes:
            try:
                system_path, ref_path = reference.ensure(
                    system_name, n, args.cache, args.threads, log
                )
            except Exception as exc:
                log(f"[{system_name} N={n}] cannot build the system/reference: {exc}")
                continue
            with np.load(ref_path) as data:
                ref_forces = data["forces"]
            best = {}
            errors = {}
            for rnd in range(args.rounds):
                order = (
                    runnable[rnd % len(runnable) :] + runnable[: rnd % len(runnable)]
                    if runnable
                    else []
                )
                if "jax_pme" in order and "ours" in order:
                    order.remove("ours")
                    order.insert(order.index("jax_pme"), "ours")
                for name in order:
                    script, _, knob = PEERS[name]
                    extra = []
                    if name == "jax_pme":
                        if "ours" not in best:
                            errors[name] = (
                                "needs the parameters of ours (which failed or was not run)"
                            )
                            continue
                        keep = (
                            "cutoff",
                            "smearing",
                            "interpolation_nodes",
                            "mesh_spacing",
                            "mesh",
                        )
                        extra = [
                            "--params",
                            json.dumps({k: best["ours"]["params"][k] for k in keep}),
                        ]
                    tries = args.calibrate if (knob and rnd == 0) else 0
                    tol = tolerance.get((name, system_name), args.accuracy)
                    while True:
                        out = os.path.join(forces_dir, f"{system_name}_{n}_{name}.npz")
                        run_extra = extra + (
                            ["--tolerance", f"{tol:.3g}"] if knob else []
                        )
                        log(
                            f"[{system_name} N={n} round {rnd + 1}] {name} {' '.join(run_extra)}"
                        )
                        res, err = run_peer(
                            python_of(venvs.get(name)),
                            script,
                            system_path,
                            out,
                            args,
                            run_extra,
                            log,
                        )
                        if res is None:
                            errors[name] = err
                            break
                        with np.load(res["forces"]) as data:
                            res["error"] = reference.rel_rms_error(
                                data["forces"], ref_forces
                            )
                        log(
                            f"    time {res['time_s'] * 1e3:.1f} ms, peak {res['peak_mb']:.0f} MB, "
                            f"error {res['error']:.3g}"
                        )
                        if knob and tries > 0 and res["error"] > args.accuracy:
                            tries -= 1
                            tol = tol * 0.8 * args.accuracy / res["error"]
                            continue
                        if knob:
                            tolerance[(name, system_name)] = tol
                            res["tolerance"] = tol
                        if name not in best or res["time_s"] < best[name]["time_s"]:
                            best[name] = res
                        errors.pop(name, None)
                        break
            for name in peers:
                if name in best:
                    rec = dict(best[name])
                    rec.update(
                        system=system_name, n=n, peer=name, ok=True,
                        rounds=args.rounds, repeats=args.repeats, warmup=args.warmup,
                    )  # fmt: skip
                    rec.pop("times", None)
                    results.append(rec)
                else:
                    results.append(
                        {"system": system_name, "n": n, "peer": name, "ok": False,
                         "reason": failures.get(name) or errors.get(name, "not run")}
                    )  # fmt: skip
            write_outputs(results, args, failures)
    write_outputs(results, args, failures)
    log(open(os.path.join(args.out, "table.md")).read())


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), no GPU, {platform.system()} {platform.release()}"


def write_outputs(results, args, failures):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = {
        "date": stamp,
        "machine": machine(),
        "accuracy": args.accuracy,
        "cutoff": args.cutoff,
        "threads": args.threads,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "failures": failures,
    }
    order = list(PEERS)
    results.sort(
        key=lambda r: (
            r["system"],
            r["n"],
            order.index(r["peer"]) if r["peer"] in order else 99,
        )
    )
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    lines = [
        f"Target relative RMS force error {args.accuracy:g}; real-space cutoff {args.cutoff:g} Å; "
        f"{args.threads} threads; time = best over rounds of the median of the timed steps "
        f"(rounds/steps/warm-up per row in the last column); {stamp}; {meta['machine']}.",
        "",
        "| system | N | peer | version | time / step (ms) | peak MB (steps) | peak MB (setup) | error | notes |",
        "|---|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if r["ok"]:
            note = r.get("notes", "")
            if r.get("tuner_warnings"):
                note += "; TUNER WARNING: " + r["tuner_warnings"][0][:120]
            if "tolerance" in r:
                note += f"; knob {r['tolerance']:.3g}"
            flag = "" if r["error"] <= args.accuracy else " (above target)"
            note += f"; {r.get('rounds', '?')}r/{r.get('repeats', '?')}s/{r.get('warmup', '?')}w"
            lines.append(
                f"| {r['system']} | {r['n']} | {r['peer']} | {r['version']} | {r['time_s'] * 1e3:.1f} | "
                f"{r['peak_mb']:.0f} | {r.get('setup_peak_mb', float('nan')):.0f} | {r['error']:.2g}{flag} | {note} |"
            )
        else:
            lines.append(
                f"| {r['system']} | {r['n']} | {r['peer']} | – | – | – | – | – | failed: {r['reason']} |"
            )
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(results, args)


def plot(results, args):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = sorted({r["system"] for r in results})
    fig, axes = plt.subplots(
        1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False
    )
    for ax, system_name in zip(axes[0], names):
        for peer in PEERS:
            pts = sorted(
                (r["n"], r["time_s"]) for r in results
                if r["ok"] and r["peer"] == peer and r["system"] == system_name
            )  # fmt: skip
            if pts:
                ax.loglog(*zip(*pts), "o-", label=peer)
                above = [
                    (r["n"], r["time_s"]) for r in results
                    if r["ok"] and r["peer"] == peer and r["system"] == system_name
                    and r["error"] > args.accuracy
                ]  # fmt: skip
                if above:
                    ax.loglog(*zip(*above), "x", color="k", ms=9)
        ax.set_xlabel("N (atoms)")
        ax.set_ylabel("time per energy + forces step (s)")
        ax.set_title(
            f"{system_name}, target error {args.accuracy:g} (x: error above target)"
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "time_vs_n.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
