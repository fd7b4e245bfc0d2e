"""The prompt a model is trained and evaluated with: system prompt, optional worked example, and
the tag names the rewards read back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from grpo_cli.config.schema import DataConfig

Message = dict[str, str]

STYLE_REASONING_TAG = {"xml": "reasoning", "think": "think", "custom": None}

# The seed notebook's system prompt, with the tag names of the config.
_LAYOUT_PROMPT = """\
Respond in the following format:
<{r}>
...
</{r}>
<{a}>
...
</{a}>"""
_THINK_PROMPT = """\
Think the problem through step by step inside <{r}> </{r}> tags, then give only the final \
number inside <{a}> </{a}> tags, in this format:
<{r}>
...
</{r}>
<{a}>
...
</{a}>"""

# One worked example for `one_shot`; written for this project, an easy two-step problem whose
# answer is an integer, like GSM8K's.
ONE_SHOT_QUESTION = (
    "A baker makes 3 trays of 12 muffins and sells 20 of them. How many muffins are left?"
)
ONE_SHOT_REASONING = (
    "The baker makes 3 * 12 = 36 muffins.\nAfter selling 20, 36 - 20 = 16 are left."
)
ONE_SHOT_ANSWER = "16"


@dataclass(frozen=True)
class PromptFormat:
    style: str = "xml"
    system_prompt: str | None = None  # prompt_style custom
    reasoning_tag: str | None = "reasoning"
    answer_tag: str = "answer"
    one_shot: bool = False

    @classmethod
    def from_config(cls, data: DataConfig) -> PromptFormat:
        return cls(
            style=data.prompt_style,
            system_prompt=data.system_prompt,
            reasoning_tag=data.reasoning_tag or STYLE_REASONING_TAG[data.prompt_style],
            answer_tag=data.answer_tag,
            one_shot=data.one_shot,
        )

    def system(self) -> str:
        if self.style == "custom":
            return self.system_prompt or ""
        template = _THINK_PROMPT if self.style == "think" else _LAYOUT_PROMPT
        return template.format(r=self.reasoning_tag, a=self.answer_tag)

    def target(self, reasoning: str, answer: str) -> str:
        """A completion written exactly in this format (the one-shot turn, `--dry-run` checks)."""
        a = self.answer_tag
        answer_block = f"<{a}>\n{answer}\n</{a}>\n"
        if self.reasoning_tag is None:
            return f"{reasoning}\n{answer_block}"
        r = self.reasoning_tag
        return f"<{r}>\n{reasoning}\n</{r}>\n{answer_block}"

    def messages(self, question: str) -> list[Message]:
        """The chat prompt for one question: system, [worked example], user."""
        messages = [{"role": "system", "content": self.system()}]
        if self.one_shot:
            messages += [
                {"role": "user", "content": ONE_SHOT_QUESTION},
                {"role": "assistant", "content": self.target(ONE_SHOT_REASONING, ONE_SHOT_ANSWER)},
            ]
        messages.append({"role": "user", "content": question})
        return messages
