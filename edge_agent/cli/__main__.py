"""`python -m edge_agent.cli`: the `edge-agent` command (the runner execs it to restart)."""

from edge_agent.cli import main

main()
