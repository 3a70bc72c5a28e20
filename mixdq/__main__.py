from mixdq.cli import main

raise SystemExit(main())
