"""A strong model behind an OpenAI-compatible completions endpoint: OpenAI, a vLLM or SGLang server, `w2s serve`.

The search sees it as text rows (harness.search.Rows): each kept hypothesis asks the server, in one request, for K
continuations (n=K) of L tokens (max_tokens=L) of its prompt and response so far, and the guide reads the returned
text through its own tokenizer. Every request carries a seed derived from the prompt's seed, the chunk and the
hypothesis, so where the server honours seeds a prompt's result does not depend on which prompts share its batch.
Requests run concurrently up to a limit; the openai client retries rate limits, server errors, timeouts and lost
connections with exponential backoff. A prompt's cost is read from the answers: requests made (retries included)
and tokens billed (`usage`).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import openai

from harness.errors import UsageError, require
from harness.stopping import EOS, STOP
from harness.types import APIModelSpec, Compute, Request, SampleConfig, Template

NO_KEY = "none"  # what the client sends where the server needs no key (the openai client insists on one)


def api_key(spec: APIModelSpec) -> str:
    """The key from the environment variable the spec names; a missing one is a one-line error."""
    if spec.api_key_env is None:
        return NO_KEY
    key = os.environ.get(spec.api_key_env)
    require(
        bool(key),
        f"environment variable {spec.api_key_env} (the API key for {spec.path}) is not set; export the key there, "
        "or set api_key_env: null for a server that needs none",
    )
    return key


def client_retries(status: int | None) -> bool:
    """Whether the openai client retries an answer with this HTTP status (408, 409, 429, 5xx); others it returns."""
    return status is not None and (status in (408, 409, 429) or status >= 500)


def request_seed(seed: int, chunk: int, hypothesis: int) -> int:
    """The seed of one request: from the prompt's seed, the chunk and the hypothesis within the prompt alone."""
    digest = hashlib.sha256(f"{seed}:{chunk}:{hypothesis}".encode()).digest()
    return int.from_bytes(digest[:4], "little") >> 1  # 31 bits: every server takes it


@dataclass
class Continuation:
    """One returned choice: its text, whether it ended ("eos", "stop") and the stop string that ended it."""

    text: str
    reason: str | None
    stop: str = ""


@dataclass
class Answer:
    choices: list[Continuation]
    requests: int  # 1 + the client's retries
    billed_tokens: int


class CompletionsModel:
    """A client of one model on an OpenAI-compatible server; `rows` gives the search its side of it."""

    def __init__(self, spec: APIModelSpec):
        self.spec, self.name = spec, spec.model
        self.client = openai.OpenAI(
            base_url=spec.base_url, api_key=api_key(spec), max_retries=spec.max_retries, timeout=spec.timeout
        )

    def check(self) -> None:
        """One quick request (no retries): the server answers, accepts the key and serves the model. A wrong URL,
        key or model name is then one line before any work starts."""
        quick = self.client.with_options(max_retries=0, timeout=min(10.0, self.spec.timeout))
        try:
            served = [m.id for m in quick.models.list()]
        except openai.APIError as err:
            raise self._failed(err, "") from None
        except (AttributeError, TypeError):  # what the client makes of a page, or JSON that is no model list
            raise UsageError(
                f"the server at {self.spec.base_url} did not answer /models with a model list: it is not an "
                "OpenAI-compatible API; fix base_url (it usually ends in /v1)"
            ) from None
        require(
            self.spec.model in served,
            f"the server at {self.spec.base_url} does not serve model {self.spec.model!r} (it serves "
            f"{', '.join(served[:5]) or 'nothing'}{', ...' if len(served) > 5 else ''}); fix `model`",
        )

    def rows(
        self, requests: Sequence[Request], sample: SampleConfig, template: Template, computes: Sequence[Compute]
    ) -> TextRows:
        require(not template.chat, f"{self.spec.path} is served over a completions API; set chat: false")
        return TextRows(self, requests, sample, template, computes)

    def complete(self, prompt: str, n: int, max_tokens: int, sample: SampleConfig, seed: int) -> Answer:
        """n continuations of `prompt`, each of at most `max_tokens` tokens."""
        try:
            raw = self.client.completions.with_raw_response.create(
                model=self.spec.model,
                prompt=prompt,
                n=n,
                max_tokens=max_tokens,
                temperature=sample.temperature,
                top_p=sample.top_p,
                stop=list(sample.stop) or None,
                seed=seed,
                extra_body={"top_k": sample.top_k} if sample.top_k else None,  # vLLM, SGLang and w2s serve take it
            )
            answer = raw.parse()
        except openai.APIError as err:
            raise self._failed(err, f" after {self.spec.max_retries} retries") from None
        choices = sorted(answer.choices, key=lambda c: c.index)
        require(
            len(choices) == n,
            f"the server at {self.spec.base_url} answered {len(choices)} choices where n={n} were asked; "
            "use a server that honours n",
        )
        billed = answer.usage.total_tokens if answer.usage is not None else 0
        return Answer([self._continuation(c, sample) for c in choices], raw.retries_taken + 1, billed)

    @staticmethod
    def _continuation(choice, sample: SampleConfig) -> Continuation:
        """A choice's text and why it ended. OpenAI's finish_reason "stop" covers both EOS and stop strings; vLLM and
        w2s serve say which stop string in `stop_reason` (null for an EOS). Where a server sends no `stop_reason`, a
        response that stopped while stop strings were set counts as stopped by one, read without it."""
        if choice.finish_reason != "stop":
            return Continuation(choice.text, None)
        extra = choice.model_extra or {}
        if "stop_reason" not in extra:
            return Continuation(choice.text, STOP if sample.stop else EOS)
        stop_reason = extra["stop_reason"]
        if isinstance(stop_reason, str) and stop_reason in sample.stop:
            return Continuation(choice.text, STOP, stop_reason)
        return Continuation(choice.text, EOS)

    def _failed(self, err: openai.APIError, retried: str) -> UsageError:
        """The one line a failed request becomes (the key is never part of it)."""
        url = self.spec.base_url
        if isinstance(err, openai.AuthenticationError | openai.PermissionDeniedError):
            return UsageError(f"the server at {url} refused the API key in {self.spec.api_key_env}; check the key")
        if isinstance(err, openai.APIConnectionError):  # timeouts included
            return UsageError(
                f"cannot reach the server at {url} ({type(err).__name__}: {err}){retried}; check that it is up and "
                "that base_url is right, then run again (finished samples are kept)"
            )
        status = getattr(err, "status_code", None)
        body = err.body if isinstance(err.body, dict) else {}
        message = " ".join(str(body.get("message") or err.message).split())[:200]
        return UsageError(
            f"the server at {url} answered {status or '?'} ({message}){retried if client_retries(status) else ''}; fix "
            "what it says, then run again (finished samples are kept)"
        )


class TextRows:
    """Rows of response text grown chunk by chunk through a completions API: one request per kept hypothesis."""

    lm = None  # the guide reads text only

    def __init__(
        self,
        model: CompletionsModel,
        requests: Sequence[Request],
        sample: SampleConfig,
        template: Template,
        computes: Sequence[Compute],
    ):
        self.model, self.sample, self.computes = model, sample, list(computes)
        # the template's whole rendering (URIAL's preamble and examples too); no tokenizer, as it is never a chat one
        self.prompts = [template.render(None, r.prompt) for r in requests]
        self.seeds = [r.seed for r in requests]
        self.chunk = 0

    def start(self) -> None:
        self.row_prompt = list(range(len(self.prompts)))
        self.responses: list[str] = [""] * len(self.prompts)
        self.reasons: list[str | None] = [None] * len(self.prompts)
        self.stops = [""] * len(self.prompts)  # the stop string that ended each row
        self.source = list(self.row_prompt)  # the row each row continues: rows with one source share a request

    def branch(self, rows: Sequence[int]) -> None:
        self.row_prompt = [self.row_prompt[r] for r in rows]
        self.responses = [self.responses[r] for r in rows]
        self.reasons, self.stops, self.source = [None] * len(rows), [""] * len(rows), list(rows)

    def advance(self, steps: int, final: bool) -> None:
        """One request per hypothesis (n = its rows), all in flight together up to the concurrency limit."""
        groups: dict[int, list[int]] = {}
        for r, source in enumerate(self.source):
            groups.setdefault(source, []).append(r)
        numbered: Counter[int] = Counter()  # a prompt's hypotheses, numbered in row order
        pool = ThreadPoolExecutor(self.model.spec.concurrency, thread_name_prefix="w2s-api")
        futures: list[tuple[list[int], Future[Answer]]] = []
        try:
            for rows in groups.values():
                p = self.row_prompt[rows[0]]
                seed = request_seed(self.seeds[p], self.chunk, numbered[p])
                numbered[p] += 1
                text = self.prompts[p] + self.responses[rows[0]]
                futures.append((rows, pool.submit(self.model.complete, text, len(rows), steps, self.sample, seed)))
            for rows, future in futures:
                answer = future.result()
                compute = self.computes[self.row_prompt[rows[0]]]
                compute.requests += answer.requests
                compute.billed_tokens += answer.billed_tokens
                compute.strong_tokens += answer.billed_tokens
                for r, choice in zip(rows, answer.choices, strict=True):
                    self._extend(r, choice)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        self.chunk += 1

    def _extend(self, r: int, choice: Continuation) -> None:
        """Append a chunk to row `r`. The server looks for stop strings in the chunk it writes only, so one that
        begins in the response so far and ends in the chunk is found here, and the response ends before it."""
        before, text = len(self.responses[r]), self.responses[r] + choice.text
        start = max(0, before - max((len(s) for s in self.sample.stop), default=0) + 1)
        found = [(i, s) for s in self.sample.stop if 0 <= (i := text.find(s, start)) < before]
        if found:
            i, stop = min(found, key=lambda f: f[0])
            self.responses[r], self.reasons[r], self.stops[r] = text[:i], STOP, stop
        else:
            self.responses[r], self.reasons[r], self.stops[r] = text, choice.reason, choice.stop

    def read(self, state, finished: Sequence[bool]) -> None:
        """The guide re-tokenises each response's text, through the stop string that ended it."""
        texts = [text + stop for text, stop in zip(self.responses, self.stops, strict=True)]
        state.update(None, texts, finished)

    def output(self, prompt: int, response: str, reason: str) -> tuple[str, list[int]]:
        return response, []
