"""The seed notebook (checkpointing_workflow_runs) replayed with a deterministic fake LLM."""

import pytest

from wfdash.workflow import Event, StartEvent, StopEvent, Workflow, step
from wfdash.workflow.checkpointer import WorkflowCheckpointer

pytestmark = pytest.mark.engine_only


class FakeLLM:
    """Stands in for OpenAI: deterministic completions that quote the prompt."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def acomplete(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return f"completion #{len(self.prompts)} of: {prompt}"


class JokeEvent(Event):
    joke: str


class JokeFlow(Workflow):
    llm = FakeLLM()

    @step
    async def generate_joke(self, ev: StartEvent) -> JokeEvent:
        topic = ev.topic

        prompt = f"Write your best joke about {topic}."
        response = await self.llm.acomplete(prompt)
        return JokeEvent(joke=str(response))

    @step
    async def critique_joke(self, ev: JokeEvent) -> StopEvent:
        joke = ev.joke

        prompt = f"Give a thorough analysis and critique of the following joke: {joke}"
        response = await self.llm.acomplete(prompt)
        return StopEvent(result=str(response))


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> FakeLLM:
    fake = FakeLLM()
    monkeypatch.setattr(JokeFlow, "llm", fake)
    return fake


async def test_it_replays_the_checkpointing_notebook(llm: FakeLLM) -> None:
    workflow = JokeFlow()
    wflow_ckptr = WorkflowCheckpointer(workflow=workflow)

    handler = wflow_ckptr.run(topic="chemistry", store_checkpoints=False)
    result = await handler
    assert isinstance(result, str)
    assert "Write your best joke about chemistry." in result
    assert llm.prompts[0] == "Write your best joke about chemistry."

    (first_run,) = wflow_ckptr.checkpoints
    assert [c.last_completed_step for c in wflow_ckptr.checkpoints[first_run]] == ["generate_joke", "critique_joke"]
    first = wflow_ckptr.checkpoints[first_run][0]
    assert first.input_event.topic == "chemistry"
    assert first.input_event.store_checkpoints is False
    assert isinstance(first.output_event, JokeEvent)
    assert first.output_event.joke == "completion #1 of: Write your best joke about chemistry."

    for topic in ["biology", "history"]:
        handler = wflow_ckptr.run(topic=topic)
        await handler

    assert len(wflow_ckptr.checkpoints) == 3
    assert [len(ckpts) for ckpts in wflow_ckptr.checkpoints.values()] == [2, 2, 2]

    after_generate = wflow_ckptr.filter_checkpoints(last_completed_step="generate_joke")
    assert len(after_generate) == 3
    assert [c.input_event.topic for c in after_generate] == ["chemistry", "biology", "history"]
    assert all(isinstance(c.output_event, JokeEvent) for c in after_generate)

    new_workflow_instance = JokeFlow()
    wflow_ckptr.workflow = new_workflow_instance
    ckpt = after_generate[0]
    prompts_before = len(llm.prompts)

    handler = wflow_ckptr.run_from(checkpoint=ckpt)
    result = await handler

    assert len(wflow_ckptr.checkpoints) == 4
    assert [len(ckpts) for ckpts in wflow_ckptr.checkpoints.values()] == [2, 2, 2, 1]
    (only,) = wflow_ckptr.checkpoints[handler.run_id]
    assert only.last_completed_step == "critique_joke"
    assert only.input_event == ckpt.output_event
    assert wflow_ckptr.parents[handler.run_id] == ckpt.id_

    # Only the critique ran again, on the chemistry joke from the checkpoint.
    assert len(llm.prompts) == prompts_before + 1
    critique_prompt = llm.prompts[-1]
    assert critique_prompt.startswith("Give a thorough analysis and critique of the following joke: ")
    assert ckpt.output_event.joke in critique_prompt
    assert "chemistry" in critique_prompt
    assert result == f"completion #{prompts_before + 1} of: {critique_prompt}"
