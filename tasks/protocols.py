"""Protocol presets: the published evaluation settings, one flag away (`halbench eval --protocol NAME`).

A preset sets what the MODEL sees (data version, image list, prompt suffix, generation length, what the judge
is shown); it never touches scoring (parsing rule, synonym list, lemmatizer, metric definitions), so a number
scored under a preset is the same function of the answers as without it. Precedence: task defaults < preset <
--task-option. Data keys (`data_keys`) apply only when the task reads real benchmark data (a data root or
data= option): on the embedded world the preset's prompts and lengths apply, its file choices do not.
Generation is greedy in every task (GenerationSettings' default), as in each source below.

- `llava-1.5` -- pope: the e3e3926 files, suffix "\nAnswer the question using a single word or phrase.",
  max_new_tokens 128. Source: LLaVA-1.5 (Liu et al. 2023, arXiv 2310.03744); haotian-liu/LLaVA
  docs/Evaluation.md pins POPE @ e3e3926, model_vqa_loader.py (temperature 0, max_new_tokens 128), eval_pope.py
  (F1 per split; the paper reports the mean over splits = halbench's top-level f1).
- `opera` -- chair: OPERA's 500 images, "Please describe this image in detail.", max_new_tokens 512; pope: the
  e3e3926 files, the question as in the file, max_new_tokens 512. Source: OPERA (Huang et al., CVPR 2024, arXiv
  2311.17911), shikiw/OPERA chair_eval.py and pope_eval.py. OPERA's own POPE answer rule is the `pope:opera`
  variant (a scoring choice, so the user's, not the preset's).
- `rlaif-v` -- object_halbench: the 300 prompts on COCO val2014, max_new_tokens 512. Source: RLAIF-V (Yu et
  al., arXiv 2405.17220), script/eval/eval_rlaifv_objhal.sh (prompts obj_halbench_300_with_image.jsonl;
  halbench ships a reconstruction, see the task card). The generation length of its muffin_vqa.py could not be
  read: 512 is halbench's default, not a verified value.
- `mmhal-v` -- mmhal: the 96 items, the judge also sees the image (judge_image=true); the judge model is yours
  (the study used GPT-4o). Source: BDHS study (Amirloo et al., arXiv 2407.02477), MMHal-Bench-V.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from halbench.errors import HalbenchError

LLAVA_SUFFIX = "\nAnswer the question using a single word or phrase."
#: option keys a preset may set: none of them changes how an answer is scored
ALLOWED_KEYS = frozenset({"version", "image_list", "prompt_suffix", "max_new_tokens", "judge_image"})


@dataclass(frozen=True)
class Protocol:
    name: str
    summary: str
    source: str
    settings: dict[str, dict[str, Any]]  # task -> options applied whatever the data
    data_keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> options for real data only

    def options_for(self, task: str, real_data: bool) -> dict[str, Any]:
        out = dict(self.settings.get(task, {}))
        if real_data:
            out.update(self.data_keys.get(task, {}))
        return out

    def tasks(self) -> list[str]:
        return sorted(set(self.settings) | set(self.data_keys))


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("llava-1.5", "POPE as LLaVA-1.5 evaluated it (F1 averaged over the three splits)",
             "LLaVA-1.5, arXiv 2310.03744; haotian-liu/LLaVA docs/Evaluation.md, model_vqa_loader.py, eval_pope.py",
             settings={"pope": {"prompt_suffix": LLAVA_SUFFIX, "max_new_tokens": 128}},
             data_keys={"pope": {"version": "e3e3926"}}),
    Protocol("opera", "CHAIR on OPERA's 500 images at 512 tokens; POPE on the e3e3926 files",
             "OPERA, arXiv 2311.17911; shikiw/OPERA chair_eval.py, pope_eval.py",
             settings={"chair": {}, "pope": {"max_new_tokens": 512}},
             data_keys={"chair": {"image_list": "opera"}, "pope": {"version": "e3e3926"}}),
    Protocol("rlaif-v", "Object HalBench: 300 detailed-description prompts on COCO val2014",
             "RLAIF-V, arXiv 2405.17220; RLHF-V/RLAIF-V script/eval/eval_rlaifv_objhal.sh",
             settings={"object_halbench": {"max_new_tokens": 512}}),
    Protocol("mmhal-v", "MMHal-Bench with an image-aware judge (MMHal-Bench-V)",
             "BDHS study, Amirloo et al., arXiv 2407.02477 (GPT-4o judge that sees the image)",
             settings={"mmhal": {"judge_image": True}}),
)}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise HalbenchError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)} "
                            "(`halbench tasks` lists them)")
    return PROTOCOLS[name]


def check_scoring_untouched() -> None:
    """Presets may only set ALLOWED_KEYS (asserted by tests; called by `halbench tasks`)."""
    for p in PROTOCOLS.values():
        for opts in list(p.settings.values()) + list(p.data_keys.values()):
            bad = set(opts) - ALLOWED_KEYS
            if bad:
                raise HalbenchError(f"protocol {p.name} sets scoring option(s) {sorted(bad)}")


def describe_lines() -> list[str]:
    """`halbench tasks`: one block per preset."""
    lines = []
    for p in PROTOCOLS.values():
        lines.append(f"protocol {p.name:<10} {p.summary}")
        for task in p.tasks():
            opts = p.options_for(task, real_data=True)
            shown = ", ".join(f"{k}={v!r}" for k, v in opts.items()) or "task defaults"
            lines.append(f"    {task:<16} {shown}")
        lines.append(f"    source: {p.source}")
    return lines
