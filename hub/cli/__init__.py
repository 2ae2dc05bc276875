"""The ``edgefleet`` command line: it reaches the hub only through edgefleet.hub.client.

main.py            argument parsing, dispatch, one-line errors
command.py         Context (arguments, hub and token, client), command registration, progress lines
config.py          which hub and token: --hub/--token, EDGEFLEET_HUB/EDGEFLEET_TOKEN, the config file
models.py          model register|list|show|delete|deploy
services.py        service list|show|score|delete
devices.py         device list|show|ping|restart-module|logs
tokens.py          token list|create|revoke (through the API), login, whoami
local.py           hub serve, hub token create|list|revoke (in the hub's database) and demo: act on the
                   system here (their imports stay inside the handler)
output.py          Result and render: the one switch between table and JSON
tables.py          the readable form of each API schema
workflow.py        register, deploy, wait: the steps the commands and the demo share
files.py           which local files are uploaded
demo.py            the demo driver: broker, hub and agents as processes, deploy, score, clean up
"""
