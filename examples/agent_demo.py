"""A research assistant agent built with LangGraph, measured stock against fast-langgraph.

The app:

- a `messages` state (add_messages) kept in a SQLite checkpointer (LangGraph's SqliteSaver);
- a router with a conditional edge: tool questions, research questions, small talk;
- a tool-calling step with `langgraph.prebuilt` (ToolNode and tools_condition): a calculator
  and a weather lookup;
- a `Send` fan-out: a research question is split into sub-queries answered in parallel, each
  through an `@cached` LLM function (sub-queries recur over a conversation);
- a summarizer that turns the findings into the answer.

The LLM is a fake chat model: answers are a function of the prompt, each call sleeps a few
milliseconds and reports token counts, so the demo runs offline and gives the same outputs
every time.

Run: `make demo`, or `.venv/bin/python examples/agent_demo.py [--runs N] [--html PATH]`.
It runs `fast_langgraph.profiler.compare` on `build_graph` over a multi-turn conversation:
stock in one process, accelerated in another, interleaved rounds.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import operator
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Send
from typing_extensions import TypedDict

from fast_langgraph import cached

LLM_LATENCY = 0.004  # seconds per fake LLM call

# -- a deterministic fake chat model --------------------------------------------------------


class FakeChatModel(BaseChatModel):
    """Answers from a hash of the prompt after `latency` seconds, with token counts. With
    tools bound, a question with digits or "weather" in it gets a tool call first."""

    latency: float = LLM_LATENCY
    tool_names: tuple[str, ...] = ()

    @property
    def _llm_type(self) -> str:
        return "fake-chat"

    def bind_tools(self, tools: Any, **kwargs: Any) -> FakeChatModel:  # type: ignore[override]
        return self.model_copy(update={"tool_names": tuple(t.name for t in tools)})

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        time.sleep(self.latency)
        last = messages[-1]
        text = str(last.content)
        digest = hashlib.sha256("|".join(str(m.content) for m in messages).encode()).hexdigest()
        if self.tool_names and isinstance(last, HumanMessage):
            call = _tool_call_for(text)
            if call is not None:
                name, args = call
                message = AIMessage(
                    content="",
                    tool_calls=[
                        {
                            "name": name,
                            "args": args,
                            "id": f"call_{digest[:12]}",
                            "type": "tool_call",
                        }
                    ],
                )
                return _result(message, messages)
        if isinstance(last, ToolMessage):
            answer = f"The {last.name} tool says: {last.content}."
        else:
            answer = f"[{digest[:8]}] On '{text[:60]}': here is what I found."
        return _result(AIMessage(content=answer), messages)


def _tool_call_for(text: str) -> tuple[str, dict[str, Any]] | None:
    lowered = text.lower()
    if "weather" in lowered:
        city = next(
            (w.strip("?,.") for w in text.split() if w[:1].isupper() and w != "What"), "Paris"
        )
        return "weather", {"city": city}
    expr = "".join(c for c in text if c.isdigit() or c in "+-*/(). ").strip()
    if any(c.isdigit() for c in expr):
        return "calculator", {"expression": expr}
    return None


def _result(message: AIMessage, prompt: list[BaseMessage]) -> ChatResult:
    tokens_in = sum(len(str(m.content).split()) for m in prompt)
    tokens_out = max(len(str(message.content).split()), 1)
    message.usage_metadata = {
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }
    return ChatResult(generations=[ChatGeneration(message=message)])


MODEL = FakeChatModel()

# -- tools and the cached LLM function -------------------------------------------------------


@tool
def calculator(expression: str) -> str:
    """Evaluates an arithmetic expression."""
    node = ast.parse(expression, mode="eval")
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.operator, ast.unaryop)
    if not all(isinstance(n, allowed) for n in ast.walk(node)):
        return "not arithmetic"
    return str(eval(compile(node, "<expr>", "eval")))  # only numbers and operators


@tool
def weather(city: str) -> str:
    """Today's weather in a city."""
    n = int(hashlib.sha256(city.encode()).hexdigest(), 16)
    return f"{10 + n % 15} C and {['sunny', 'cloudy', 'rainy'][n % 3]} in {city}"


TOOLS = [calculator, weather]


@cached(max_size=1024, ttl=3600)
def research_llm(query: str) -> str:
    """One research sub-query, answered by the LLM. Cached: sub-queries recur."""
    return str(MODEL.invoke([HumanMessage(content=f"Key facts: {query}")]).content)


# -- the graph -------------------------------------------------------------------------------


class AgentState(TypedDict):
    messages: Annotated[list, add_messages]
    route: str
    queries: list[str]
    findings: Annotated[list, operator.add]


class ResearchTask(TypedDict):
    query: str


def router(state: AgentState) -> dict:
    text = str(state["messages"][-1].content).lower()
    if text.startswith("research") or " compare " in f" {text} ":
        route = "research"
    elif "weather" in text or any(c.isdigit() for c in text):
        route = "agent"
    else:
        route = "chat"
    return {"route": route}


def agent(state: AgentState) -> dict:
    return {"messages": [MODEL.bind_tools(TOOLS).invoke(state["messages"])]}


def plan(state: AgentState) -> dict:
    words = [w.strip("?,.!") for w in str(state["messages"][-1].content).split()[1:]]
    topics = [w for w in words if len(w) > 3 and w.lower() not in {"with", "their", "about"}]
    aspects = ("overview", "history")
    return {"queries": [f"{aspect} of {t}" for t in topics[:3] for aspect in aspects]}


def fan_out(state: AgentState) -> list[Send]:
    return [Send("research", {"query": q}) for q in state["queries"]]


def research(task: ResearchTask) -> dict:
    return {"findings": [f"{task['query']}: {research_llm(task['query'])}"]}


def summarize(state: AgentState) -> dict:
    latest = state["findings"][-len(state["queries"]) :]
    prompt = [*state["messages"], HumanMessage(content="Summarize: " + " | ".join(latest))]
    return {"messages": [AIMessage(content=str(MODEL.invoke(prompt).content))]}


def chat(state: AgentState) -> dict:
    return {"messages": [MODEL.invoke(state["messages"])]}


def build_graph(db_path: str | None = None):
    """The compiled agent, checkpointed by LangGraph's SqliteSaver on `db_path` (a new file
    in a temporary directory by default)."""
    if db_path is None:
        db_path = str(Path(tempfile.mkdtemp(prefix="agent-demo-")) / "agent.db")
    builder = StateGraph(AgentState)
    builder.add_node("router", router)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(TOOLS))
    builder.add_node("plan", plan)
    builder.add_node("research", research)
    builder.add_node("summarize", summarize)
    builder.add_node("chat", chat)
    builder.add_edge(START, "router")
    builder.add_conditional_edges(
        "router", lambda s: s["route"], {"agent": "agent", "research": "plan", "chat": "chat"}
    )
    builder.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
    builder.add_edge("tools", "agent")
    builder.add_conditional_edges("plan", fan_out, ["research"])
    builder.add_edge("research", "summarize")
    builder.add_edge("summarize", END)
    builder.add_edge("chat", END)
    conn = sqlite3.connect(db_path, check_same_thread=False)
    return builder.compile(checkpointer=SqliteSaver(conn))


# One conversation on one thread; research questions share topics, so sub-queries recur.
CONVERSATION = [
    "Hello! I am planning a trip to Europe.",
    "What is the weather in Paris?",
    "Research Paris museums and cafes",
    "What is 1250 * 3 + 400?",
    "Research Rome museums and history",
    "What is the weather in Rome?",
    "Research Paris Rome trains",
    "Thanks, that helps a lot.",
    "What is 12 * 7 * 30?",
    "Research cafes museums trains",
    "Compare Paris and Rome for food",
    "Great, see you later!",
]


def inputs() -> list[dict[str, Any]]:
    return [{"messages": [HumanMessage(content=text)]} for text in CONVERSATION]


def main() -> None:
    from fast_langgraph.profiler import compare

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--html", default="report.html")
    parser.add_argument("--json", help="also write the result as JSON")
    args = parser.parse_args()
    result = compare(build_graph, inputs(), runs=args.runs)
    print(result.format())
    result.export(args.html)
    if args.json:
        result.export(args.json)
    print(f"\nwrote {args.html}")


if __name__ == "__main__":
    main()
