from agent.cli.agent_main import main

main()
