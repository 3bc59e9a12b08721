from swarmproxy.cli import main

raise SystemExit(main())
