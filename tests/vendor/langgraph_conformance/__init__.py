"""LangGraph's delta-channel-history conformance spec, vendored (see the header of each file
and LICENSE). Source: https://github.com/langchain-ai/langgraph, commit f09cfe8ffc1eeffd68f4b628ed69c30f7cad229f,
libs/checkpoint-conformance/langgraph/checkpoint/conformance/spec/."""
