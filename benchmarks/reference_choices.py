"""How often the paper's reference choices change what best-of-N and CBS pick, on a study's own models and prompts.

For every task, strong model, best-of-N and CBS method and seed of a study config, each prompt is decoded twice
under the same seeds: with this harness's default and with the reference code's choice. Best-of-N draws the same
candidates both times, so a different output is a different pick; CBS's chunks before the last are ranked alike
under `eos_at_budget`, so a different output is a different last pick. Prints one line per (task, strong model,
method) and ends with one JSON line.

    python benchmarks/reference_choices.py configs/offline-small.yaml [--choice eos_at_budget] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from dataclasses import replace

import torch

from harness.backends.hf import HFModel
from harness.guide import Guide
from harness.runner import request_seed
from harness.study import Study
from harness.types import Request

CHOICES = {  # option -> (how the default decodes, how the reference decodes): (guide, method) -> (guide, method)
    "eos_at_budget": lambda guide, method, ref: (
        Guide(guide.tuned, guide.untuned, guide.beta, guide.template, guide.retokenize, eos_at_budget=ref),
        method,
    ),
    "branch_finished": lambda guide, method, ref: (guide, replace(method, branch_finished=ref)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a study config (its models, tasks, limit and seeds are used)")
    parser.add_argument("overrides", nargs="*", help="config overrides, as for w2s run")
    parser.add_argument("--choice", default="eos_at_budget", choices=sorted(CHOICES))
    args = parser.parse_intermixed_args()
    torch.set_num_threads(os.cpu_count())
    study = Study.load(args.config, args.overrides)
    models: dict[str, HFModel] = {}

    def model(name: str) -> HFModel:
        if name not in models:
            models[name] = HFModel.load(study.specs[name])
        return models[name]

    kinds = ("cbs",) if args.choice == "branch_finished" else ("bon", "cbs")  # best-of-N has one round only
    rows = []
    for task_name, task in study.tasks.items():
        c = task.config
        entry = study.config.guides[c.guide]
        template = study.guide_template(task_name)
        guide = Guide(model(entry.tuned), model(entry.untuned), entry.beta, template, entry.retokenize)
        examples, sample = task.examples(study.config.limit), c.sample.build()
        searches = [m for m in study.task_methods[task_name] if m.name in kinds]
        for strong_name in c.strong:
            strong = model(strong_name)
            template = study.cell_template(
                next(x for x in study.cells() if (x.task, x.strong) == (task_name, strong_name))
            )
            for method in searches:
                changed = total = cut = 0
                for seed in study.config.seeds:
                    requests = [Request(e.id, e.prompt, request_seed(seed, e.id)) for e in examples]
                    outs = {}
                    for ref in (False, True):
                        g, m = CHOICES[args.choice](guide, method, ref)
                        outs[ref] = []
                        for i in range(0, len(requests), study.config.batch_size):
                            batch = requests[i : i + study.config.batch_size]
                            outs[ref] += m.decode(strong, batch, sample, template=template, guide=g)
                    changed += sum(a.text != b.text for a, b in zip(outs[False], outs[True], strict=True))
                    cut += sum(o.finish_reason == "length" for o in outs[False])
                    total += len(requests)
                row = {
                    "task": task_name,
                    "strong": strong_name,
                    "method": method.label(),
                    "prompts": total,
                    "changed": changed,
                    "cut_by_budget": cut,
                    "share": changed / total,
                }
                rows.append(row)
                print(
                    f"{task_name:6} {strong_name:10} {method.label():20} picks changed {changed:3}/{total} "
                    f"(outputs cut by the budget: {cut})"
                )
    changed, total = sum(r["changed"] for r in rows), sum(r["prompts"] for r in rows)
    by_method = {name: statistics.fmean(r["share"] for r in rows if r["method"].startswith(name)) for name in kinds}
    print(f"all: {changed}/{total} outputs changed ({changed / total:.1%})")
    print(
        json.dumps({"choice": args.choice, "changed": changed, "prompts": total, "by_method": by_method, "rows": rows})
    )


if __name__ == "__main__":
    main()
