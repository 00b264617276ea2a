"""Engine overhead benchmark: wfdash.workflow vs llama-index-workflows 1.3 vs LangGraph.

Run from the repository root inside the benchmark venv (see bench/README.md):

    .venv-bench/bin/python bench/engine.py > bench/results/engine.json
    .venv-bench/bin/python bench/engine.py --quick

Prints one JSON document to stdout; progress goes to stderr. Every figure is
taken in one asyncio loop with time.perf_counter, after a warm-up run, as the
median over several repeats. Each case is capped (default 20 s for one repeat);
a case over the cap reports "skipped: too slow" with its partial per-step time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import operator
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore", category=DeprecationWarning)

# Every step body of every engine calls _tick(): it counts steps, so a run stopped
# at the cap still tells how many steps it got through, and it ends a run that is
# past its deadline from inside (an engine whose workers never yield to the loop
# cannot be stopped from outside).
STEPS_DONE = 0
DEADLINE = float("inf")
CAP_HIT = False


class CapExceeded(Exception):
    pass


def _tick() -> None:
    global STEPS_DONE, CAP_HIT
    STEPS_DONE += 1
    if time.perf_counter() > DEADLINE:
        CAP_HIT = True
        raise CapExceeded("over the cap")


SKIPPED = "skipped: too slow"
BARE_SKIPPED = "skipped: too slow (bare run already over the cap)"
SIZES = (10, 100, 1000)
FANOUT_SIZES = (100, 1000)
FANOUT_WORKERS = 10
RUNS, RUN_CONCURRENCY = 200, 50

Body = Callable[[], Awaitable[Any]]
Abort = Callable[[], Awaitable[None]]
Prepared = tuple[Body, Abort]


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


async def _noop() -> None:
    return None


# ---------------------------------------------------------------------------
# wfdash.workflow and llama-index-workflows share the same programming model:
# one builder, parametrised by the engine's classes.
# ---------------------------------------------------------------------------


class EventEngine:
    """Workflows built for an engine whose API is llama-index style (wfdash, llama)."""

    name: str
    Workflow: Any
    step: Any
    Event: Any
    StartEvent: Any
    StopEvent: Any
    Context: Any
    Checkpointer: Any

    def __init__(self) -> None:
        self._events: list[type] = []
        self._cache: dict[tuple[Any, ...], Any] = {}

    # -- definitions ---------------------------------------------------------

    def _step(self, fn: Callable[..., Any], qualname: str, annotations: dict[str, Any], **cfg: Any) -> Any:
        fn.__name__ = qualname.rsplit(".", 1)[-1]
        fn.__qualname__ = qualname
        fn.__annotations__ = annotations
        return self.step(**cfg)(fn)

    def _event(self, name: str, **fields: type) -> type:
        return type(name, (self.Event,), {"__annotations__": fields, "__module__": __name__})

    def _workflow(self, name: str, steps: dict[str, Any]) -> Any:
        return type(name, (self.Workflow,), {"__module__": __name__, **steps})(timeout=None)

    def events(self, n: int) -> list[type]:
        """E1..En, each carrying the step counter `i`; made once per engine and reused."""
        while len(self._events) < n:
            self._events.append(self._event(f"E{len(self._events) + 1}", i=int))
        return self._events[:n]

    def loop(self, n: int) -> Any:
        key = ("loop", n)
        if key not in self._cache:
            Loop = self._event(f"LoopEvent{n}", i=int)
            stop = self.StopEvent

            async def loop(self: Any, ev: Any) -> Any:
                _tick()
                i = ev.i + 1 if isinstance(ev, Loop) else 1
                return Loop(i=i) if i < n else stop(result=i)

            cls = f"Loop{n}"
            steps = {
                "loop": self._step(
                    loop, f"{cls}.loop", {"ev": self.StartEvent | Loop, "return": Loop | stop}, num_workers=1
                )
            }
            self._cache[key] = self._workflow(cls, steps)
        return self._cache[key]

    def distinct(self, n: int) -> Any:
        key = ("distinct", n)
        if key not in self._cache:
            cls = f"Chain{n}"
            evs = [self.StartEvent, *self.events(n - 1), self.StopEvent]
            steps = {}
            for k in range(n):
                in_t, out_t = evs[k], evs[k + 1]
                last = k == n - 1

                def make(out_t: Any = out_t, k: int = k, last: bool = last) -> Callable[..., Any]:
                    async def fn(self: Any, ev: Any) -> Any:
                        _tick()
                        return out_t(result=k + 1) if last else out_t(i=k + 1)

                    return fn

                steps[f"s{k}"] = self._step(make(), f"{cls}.s{k}", {"ev": in_t, "return": out_t}, num_workers=1)
            self._cache[key] = self._workflow(cls, steps)
        return self._cache[key]

    def fanout(self, n: int, workers: int) -> Any:
        """start sends n Work events; `work` (num_workers=workers) answers each; `collect` fans in
        with ctx.collect_events(ev, [Result] * n)."""
        key = ("fanout", n, workers)
        if key not in self._cache:
            cls = f"Fanout{n}"
            Work = self._event(f"Work{n}", i=int)
            Result = self._event(f"Result{n}", i=int)
            stop, ctx_t = self.StopEvent, self.Context

            async def start(self: Any, ctx: Any, ev: Any) -> Any:
                _tick()
                for i in range(n):
                    ctx.send_event(Work(i=i))
                return None

            async def work(self: Any, ev: Any) -> Any:
                _tick()
                return Result(i=ev.i)

            async def collect(self: Any, ctx: Any, ev: Any) -> Any:
                _tick()
                got = ctx.collect_events(ev, [Result] * n)
                return None if got is None else stop(result=len(got))

            steps = {
                "start": self._step(
                    start, f"{cls}.start", {"ctx": ctx_t, "ev": self.StartEvent, "return": Work | None}, num_workers=1
                ),
                "work": self._step(work, f"{cls}.work", {"ev": Work, "return": Result}, num_workers=workers),
                "collect": self._step(
                    collect, f"{cls}.collect", {"ctx": ctx_t, "ev": Result, "return": stop | None}, num_workers=1
                ),
            }
            self._cache[key] = self._workflow(cls, steps)
        return self._cache[key]

    def three(self) -> Any:
        return self.distinct(3)

    # -- running -------------------------------------------------------------

    def start(self, wf: Any, checkpointer: Any | None) -> Any:
        return checkpointer.run() if checkpointer is not None else wf.run()

    def new_checkpointer(self, wf: Any) -> Any:
        return self.Checkpointer(workflow=wf)

    async def abort(self, handler: Any) -> None:
        try:
            await asyncio.wait_for(handler.cancel_run(), 5)
        except BaseException:  # noqa: BLE001 - whatever the run ended with, it is over
            pass

    def prepare(self, wf: Any, checkpointed: bool) -> Prepared:
        """One run; a fresh checkpointer per repeat so memory does not accumulate."""
        cp = self.new_checkpointer(wf) if checkpointed else None
        handlers: list[Any] = []

        async def body() -> Any:
            h = self.start(wf, cp)
            handlers.append(h)
            return await h

        async def abort() -> None:
            for h in handlers:
                await self.abort(h)

        return body, abort

    def prepare_many(self, wf: Any, checkpointed: bool, runs: int, concurrency: int) -> Prepared:
        cp = self.new_checkpointer(wf) if checkpointed else None
        handlers: list[Any] = []

        async def body() -> Any:
            sem = asyncio.Semaphore(concurrency)

            async def one() -> Any:
                async with sem:
                    h = self.start(wf, cp)
                    handlers.append(h)
                    return await h

            return await asyncio.gather(*(one() for _ in range(runs)))

        async def abort() -> None:
            for h in handlers:
                await self.abort(h)

        return body, abort

    async def snapshot_sizes(self, n: int, at: tuple[int, ...]) -> dict[str, int]:
        """len(json.dumps(ctx_state)) of the checkpoints after step `at` of one checkpointed n-step loop."""
        wf = self.loop(n)
        cp = self.new_checkpointer(wf)
        await self.start(wf, cp)
        (ckpts,) = cp.checkpoints.values()
        return {str(k): len(json.dumps(ckpts[k - 1].ctx_state)) for k in at}


class Wfdash(EventEngine):
    name = "wfdash"

    def __init__(self) -> None:
        super().__init__()
        from wfdash.workflow import Context, Event, StartEvent, StopEvent, Workflow, step
        from wfdash.workflow.checkpointer import WorkflowCheckpointer

        self.Workflow, self.step, self.Event = Workflow, step, Event
        self.StartEvent, self.StopEvent, self.Context = StartEvent, StopEvent, Context
        self.Checkpointer = WorkflowCheckpointer


class Llama(EventEngine):
    name = "llama_index_workflows"

    def __init__(self) -> None:
        super().__init__()
        from workflows import Context, Workflow, step
        from workflows.checkpointer import WorkflowCheckpointer
        from workflows.events import Event, StartEvent, StopEvent

        self.Workflow, self.step, self.Event = Workflow, step, Event
        self.StartEvent, self.StopEvent, self.Context = StartEvent, StopEvent, Context
        self.Checkpointer = WorkflowCheckpointer


# ---------------------------------------------------------------------------
# LangGraph: StateGraph nodes; checkpointing is InMemorySaver.
# ---------------------------------------------------------------------------


class LoopState(TypedDict):
    i: int


class FanState(TypedDict):
    results: Annotated[list[int], operator.add]


class WorkState(TypedDict):
    i: int


class LangGraph:
    name = "langgraph"

    def __init__(self) -> None:
        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph.graph import END, START, StateGraph
        from langgraph.types import Send

        self.InMemorySaver, self.StateGraph, self.Send = InMemorySaver, StateGraph, Send
        self.START, self.END = START, END
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._thread = 0

    def loop(self, n: int) -> Any:
        key = ("loop", n)
        if key not in self._cache:
            g = self.StateGraph(LoopState)

            async def loop(state: LoopState) -> dict[str, int]:
                _tick()
                return {"i": state["i"] + 1}

            g.add_node("loop", loop)
            g.add_edge(self.START, "loop")
            end = self.END
            g.add_conditional_edges("loop", lambda s: "loop" if s["i"] < n else end, ["loop", end])
            self._cache[key] = (g, {"i": 0}, n)
        return self._cache[key]

    def distinct(self, n: int) -> Any:
        key = ("distinct", n)
        if key not in self._cache:
            g = self.StateGraph(LoopState)

            async def node(state: LoopState) -> dict[str, int]:
                _tick()
                return {"i": state["i"] + 1}

            prev = self.START
            for k in range(n):
                g.add_node(f"s{k}", node)
                g.add_edge(prev, f"s{k}")
                prev = f"s{k}"
            g.add_edge(prev, self.END)
            self._cache[key] = (g, {"i": 0}, n)
        return self._cache[key]

    def fanout(self, n: int, workers: int) -> Any:
        key = ("fanout", n, workers)
        if key not in self._cache:
            g = self.StateGraph(FanState)
            send = self.Send

            async def start(state: FanState) -> dict[str, Any]:
                _tick()
                return {}

            async def work(state: WorkState) -> dict[str, Any]:
                _tick()
                return {"results": [state["i"]]}

            async def collect(state: FanState) -> dict[str, Any]:
                _tick()
                return {}

            g.add_node("start", start)
            g.add_node("work", work)
            g.add_node("collect", collect)
            g.add_edge(self.START, "start")
            g.add_conditional_edges("start", lambda s: [send("work", {"i": i}) for i in range(n)], ["work"])
            g.add_edge("work", "collect")
            g.add_edge("collect", self.END)
            self._cache[key] = (g, {"results": []}, 2 * n + 2, workers)
        return self._cache[key]

    def three(self) -> Any:
        return self.distinct(3)

    def _config(self, spec: Any) -> dict[str, Any]:
        self._thread += 1
        cfg: dict[str, Any] = {
            "recursion_limit": spec[2] + 10,
            "configurable": {"thread_id": f"t{self._thread}"},
        }
        if len(spec) > 3:
            cfg["max_concurrency"] = spec[3]
        return cfg

    def _compiled(self, spec: Any, checkpointed: bool) -> Any:
        # A fresh InMemorySaver per repeat (compiled outside the timing); the bare
        # graph is compiled once.
        if checkpointed:
            return spec[0].compile(checkpointer=self.InMemorySaver())
        key = ("compiled", id(spec[0]))
        if key not in self._cache:
            self._cache[key] = spec[0].compile()
        return self._cache[key]

    def prepare(self, spec: Any, checkpointed: bool) -> Prepared:
        graph = self._compiled(spec, checkpointed)
        cfg = self._config(spec)

        async def body() -> Any:
            return await graph.ainvoke(dict(spec[1]), cfg)

        return body, _noop  # cancelling the timed task cancels ainvoke

    def prepare_many(self, spec: Any, checkpointed: bool, runs: int, concurrency: int) -> Prepared:
        graph = self._compiled(spec, checkpointed)
        cfgs = [self._config(spec) for _ in range(runs)]

        async def body() -> Any:
            sem = asyncio.Semaphore(concurrency)

            async def one(cfg: dict[str, Any]) -> Any:
                async with sem:
                    return await graph.ainvoke(dict(spec[1]), cfg)

            return await asyncio.gather(*(one(c) for c in cfgs))

        return body, _noop

    async def snapshot_sizes(self, n: int, at: tuple[int, ...]) -> dict[str, int]:
        """len(json.dumps(checkpoint)) of the saved checkpoint after step `at` (LangGraph's own dict:
        channel values, versions, versions seen); default=str for non-JSON values."""
        spec = self.loop(n)
        graph = self._compiled(spec, True)
        cfg = self._config(spec)
        await graph.ainvoke(dict(spec[1]), cfg)
        by_step = {}
        async for t in graph.checkpointer.alist(cfg):
            by_step[t.metadata.get("step")] = t.checkpoint
        # LangGraph's step -1 is the input, step 0 the start; loop step k is saved as step k.
        return {str(k): len(json.dumps(by_step[k], default=str)) for k in at}


# ---------------------------------------------------------------------------
# Timing harness
# ---------------------------------------------------------------------------


class Harness:
    def __init__(self, repeats: int, cap: float, budget: float, min_time: float) -> None:
        self.repeats = repeats  # at least this many, unless the budget runs out
        self.min_time = min_time  # short cases repeat until they have run this long (at most 100 times)
        self.cap = cap  # one repeat
        self.budget = budget  # all repeats of a case, after the first

    async def _once(self, prepare: Callable[[], Prepared]) -> tuple[float, int, bool]:
        global STEPS_DONE, DEADLINE, CAP_HIT
        body, abort = prepare()
        gc.collect(1)  # the last repeat's garbage; a full collection starts each case
        STEPS_DONE, CAP_HIT = 0, False
        t0 = time.perf_counter()
        DEADLINE = t0 + self.cap
        task = asyncio.ensure_future(body())
        try:
            # Backstop for a run that stops calling steps; _tick() ends the others.
            done, _ = await asyncio.wait({task}, timeout=self.cap + 5.0)
        finally:
            DEADLINE = float("inf")
        elapsed = time.perf_counter() - t0
        steps = STEPS_DONE
        if not done or CAP_HIT:
            await abort()
            task.cancel()
            try:
                await task
            except BaseException:  # noqa: BLE001 - the run was stopped on purpose
                pass
            await asyncio.sleep(0.05)  # let an engine's cancelled tasks unwind
            return elapsed, steps, False
        task.result()  # raise the run's error, if any
        return elapsed, steps, True

    async def measure(self, prepare: Callable[[], Prepared], per: int) -> dict[str, Any]:
        """Median seconds of a repeat; `per` (steps, events or runs) is kept to divide it by."""
        gc.collect()
        elapsed, steps, ok = await self._once(prepare)  # warm-up
        if not ok:
            return {"status": SKIPPED, "partial_s": round(elapsed, 3), "partial_steps": steps}
        times: list[float] = []
        if elapsed > 2.0:  # a long run is its own warm-up; count it
            times.append(elapsed)
        spent = 0.0
        while (len(times) < self.repeats and (spent < self.budget or not times)) or (
            spent < self.min_time and len(times) < 100
        ):
            elapsed, steps, ok = await self._once(prepare)
            if not ok:
                return {"status": SKIPPED, "partial_s": round(elapsed, 3), "partial_steps": steps}
            times.append(elapsed)
            spent += elapsed
        return {
            "median_s": statistics.median(times),
            "min_s": min(times),
            "max_s": max(times),
            "per": per,
            "repeats": len(times),
        }


def us_per(m: dict[str, Any]) -> float | str:
    return SKIPPED if "status" in m else round(m["median_s"] / m["per"] * 1e6, 2)


def add_case(out: dict[str, Any], mode: str, m: dict[str, Any], unit: str = "us_per_step") -> None:
    key = f"{mode}_{unit}"
    if "status" in m:
        out[key] = SKIPPED
        steps = m["partial_steps"]
        out[f"{mode}_partial"] = {
            "seconds": m["partial_s"],
            "steps_done": steps,
            "us_per_step": round(m["partial_s"] / steps * 1e6, 2) if steps else None,
        }
    else:
        out[key] = us_per(m)
        out[f"{key}_min"] = round(m["min_s"] / m["per"] * 1e6, 2)
        out[f"{key}_max"] = round(m["max_s"] / m["per"] * 1e6, 2)
        out[f"{mode}_repeats"] = m["repeats"]


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("pydantic", "llama-index-workflows", "langgraph", "langgraph-checkpoint"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    engines: list[Any] = [Wfdash(), Llama(), LangGraph()]
    h = Harness(repeats=args.repeats, cap=args.cap, budget=args.budget, min_time=0.3 if args.quick else 1.0)
    modes = (("bare", False), ("checkpointed", True))
    sizes = tuple(args.sizes)

    def skip(engine: Any, n: int, checkpointed: bool) -> bool:
        return args.quick and checkpointed and n >= 1000 and isinstance(engine, Llama)

    # Global warm-up: a few small runs of every shape on every engine.
    for e in engines:
        for _ in range(3):
            for ckpt in (False, True):
                for build in (e.loop(10), e.distinct(10), e.fanout(10, 2)):
                    body, _ = e.prepare(build, ckpt)
                    await body()

    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "packages": versions(),
            "quick": args.quick,
            "repeats": args.repeats,
            "cap_s": args.cap,
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        }
    }

    for shape in ("chain_loop", "chain_distinct"):
        section: dict[str, Any] = {}
        for e in engines:
            per_engine: dict[str, Any] = {}
            for n in sizes:
                wf = e.loop(n) if shape == "chain_loop" else e.distinct(n)
                case: dict[str, Any] = {}
                for mode, ckpt in modes:
                    if skip(e, n, ckpt):
                        case[f"{mode}_us_per_step"] = "skipped: --quick"
                        continue
                    if ckpt and case.get("bare_us_per_step") == SKIPPED:
                        case[f"{mode}_us_per_step"] = BARE_SKIPPED
                        continue
                    log(f"{shape} {e.name} n={n} {mode} ...")
                    m = await h.measure(lambda e=e, wf=wf, ckpt=ckpt: e.prepare(wf, ckpt), n)
                    add_case(case, mode, m)
                    log(f"   {case.get(f'{mode}_us_per_step')}")
                per_engine[str(n)] = case
            section[e.name] = per_engine
        result[shape] = section

    fan: dict[str, Any] = {}
    for n in args.fanout:
        row: dict[str, Any] = {"events": n, "workers": FANOUT_WORKERS}
        for e in engines:
            wf = e.fanout(n, FANOUT_WORKERS)
            case = {}
            for mode, ckpt in modes:
                if ckpt and case.get("bare_ms_per_run") == SKIPPED:
                    case[f"{mode}_ms_per_run"] = BARE_SKIPPED
                    continue
                log(f"fanout {e.name} n={n} {mode} ...")
                m = await h.measure(lambda e=e, wf=wf, ckpt=ckpt: e.prepare(wf, ckpt), 1)
                if "status" in m:
                    add_case(case, mode, m, unit="ms_per_run")
                else:
                    case[f"{mode}_ms_per_run"] = round(m["median_s"] * 1e3, 3)
                    case[f"{mode}_ms_per_run_min"] = round(m["min_s"] * 1e3, 3)
                    case[f"{mode}_ms_per_run_max"] = round(m["max_s"] * 1e3, 3)
                    case[f"{mode}_us_per_event"] = round(m["median_s"] / n * 1e6, 2)
                    case[f"{mode}_repeats"] = m["repeats"]
                log(f"   {case.get(f'{mode}_ms_per_run')}")
            row[e.name] = case
        fan[str(n)] = row
    result["fanout"] = fan

    runs: dict[str, Any] = {"runs": RUNS, "concurrency": RUN_CONCURRENCY, "steps_per_run": 3}
    for e in engines:
        wf = e.three()
        case = {}
        for mode, ckpt in modes:
            log(f"runs {e.name} {mode} ...")
            m = await h.measure(lambda e=e, wf=wf, ckpt=ckpt: e.prepare_many(wf, ckpt, RUNS, RUN_CONCURRENCY), RUNS)
            if "status" in m:
                add_case(case, mode, m, unit="runs_per_s")
            else:
                case[f"{mode}_runs_per_s"] = round(RUNS / m["median_s"], 1)
                # the slowest repeat gives the fewest runs per second
                case[f"{mode}_runs_per_s_min"] = round(RUNS / m["max_s"], 1)
                case[f"{mode}_runs_per_s_max"] = round(RUNS / m["min_s"], 1)
                case[f"{mode}_ms_total"] = round(m["median_s"] * 1e3, 2)
                case[f"{mode}_repeats"] = m["repeats"]
            log(f"   {case.get(f'{mode}_runs_per_s')}")
        runs[e.name] = case
    result[f"runs_{RUNS}_concurrency_{RUN_CONCURRENCY}"] = runs

    log("snapshot sizes ...")
    at = (10, 1000)
    snaps: dict[str, Any] = {"shape": "chain_loop, 1000-step run; checkpoint after step 10 and step 1000"}
    for e in engines:
        snaps[e.name] = await e.snapshot_sizes(1000, at)
    result["snapshot_bytes"] = snaps

    result["ratios"] = ratios(result, sizes)
    result["targets"] = targets(result, sizes)
    return result


def _num(x: Any) -> float | None:
    return x if isinstance(x, (int, float)) else None


def _ratio(a: Any, b: Any) -> float | None:
    a, b = _num(a), _num(b)
    return round(a / b, 3) if a is not None and b else None


def ratios(r: dict[str, Any], sizes: tuple[int, ...]) -> dict[str, Any]:
    """wfdash figure / other figure: below 1 means wfdash is faster."""
    out: dict[str, Any] = {}
    for shape in ("chain_loop", "chain_distinct"):
        w = r[shape]["wfdash"]
        tag = "" if shape == "chain_loop" else "_distinct"
        for n in map(str, sizes):
            wc = w[n].get("checkpointed_us_per_step")
            out[f"wfdash_checkpointed_vs_wfdash_bare_per_step{tag}_{n}"] = _ratio(wc, w[n].get("bare_us_per_step"))
            for other, short in (("llama_index_workflows", "llama"), ("langgraph", "langgraph")):
                o = r[shape][other][n]
                out[f"wfdash_checkpointed_vs_{short}_bare_per_step{tag}_{n}"] = _ratio(wc, o.get("bare_us_per_step"))
                out[f"wfdash_checkpointed_vs_{short}_checkpointed_per_step{tag}_{n}"] = _ratio(
                    wc, o.get("checkpointed_us_per_step")
                )
                out[f"wfdash_bare_vs_{short}_bare_per_step{tag}_{n}"] = _ratio(
                    w[n].get("bare_us_per_step"), o.get("bare_us_per_step")
                )
    for n, row in r["fanout"].items():
        for other, short in (("llama_index_workflows", "llama"), ("langgraph", "langgraph")):
            out[f"wfdash_vs_{short}_fanout_checkpointed_{n}"] = _ratio(
                row["wfdash"].get("checkpointed_ms_per_run"), row[other].get("checkpointed_ms_per_run")
            )
    runs = r[f"runs_{RUNS}_concurrency_{RUN_CONCURRENCY}"]
    for other, short in (("llama_index_workflows", "llama"), ("langgraph", "langgraph")):
        # throughput: above 1 means wfdash is faster
        out[f"wfdash_vs_{short}_runs_per_s_checkpointed (higher is better)"] = _ratio(
            runs["wfdash"].get("checkpointed_runs_per_s"), runs[other].get("checkpointed_runs_per_s")
        )
    return out


def targets(r: dict[str, Any], sizes: tuple[int, ...]) -> dict[str, Any]:
    """The issue's targets, evaluated on this run's wfdash figures."""
    per_step = {
        f"{shape}_{n}": r[shape]["wfdash"][str(n)].get("checkpointed_us_per_step")
        for shape in ("chain_loop", "chain_distinct")
        for n in sizes
    }
    nums = [v for v in per_step.values() if isinstance(v, (int, float))]
    out: dict[str, Any] = {
        "checkpointed_us_per_step_max_100": {
            "values": per_step,
            "met": bool(nums) and len(nums) == len(per_step) and max(nums) <= 100.0,
        }
    }
    flat = {}
    for shape in ("chain_loop", "chain_distinct"):
        vals = [_num(r[shape]["wfdash"][str(n)].get("checkpointed_us_per_step")) for n in sizes if n >= 100]
        if len(vals) == 2 and all(v is not None for v in vals):
            flat[shape] = {"ratio_1000_vs_100": round(vals[1] / vals[0], 3), "met": vals[1] / vals[0] <= 1.25}
    out["checkpointed_flat_in_run_length (1000 vs 100 steps within 25%)"] = flat
    fan = r["fanout"].get("100", {}).get("wfdash", {})
    ms = fan.get("checkpointed_ms_per_run")
    out["fanout_100_over_10_workers_checkpointed_under_30_ms"] = {
        "ms": ms,
        "met": isinstance(ms, (int, float)) and ms < 30.0,
    }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats; skip llama's 1000-step checkpointer")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per case (default 5, quick 3)")
    p.add_argument("--cap", type=float, default=20.0, help="seconds one repeat may take before it is skipped")
    p.add_argument("--budget", type=float, default=None, help="seconds of repeats per case before stopping early")
    args = p.parse_args()
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.budget is None:
        args.budget = 4.0 if args.quick else 10.0
    args.sizes = list(SIZES)
    args.fanout = list(FANOUT_SIZES)
    t0 = time.perf_counter()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import finish, header

    # commit, dirty flag, package versions, CPU model, RAM, load: bench/all.py writes the same under "run"
    run = header("engine", "quick" if args.quick else "full", {"repeats": args.repeats, "cap_s": args.cap})
    result = asyncio.run(run_all(args))
    result["run"] = finish(run, t0)
    result["machine"]["bench_wall_s"] = round(time.perf_counter() - t0, 1)
    # Other processes on the machine skew every figure: compare loads before trusting a diff.
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
