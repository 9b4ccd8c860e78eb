"""The long-lived actors `actors.root` starts in the root nursery, each under a
supervisor: provider supervisors, the ledger writer, the ledger's upkeep (lease keeper,
hold sweeper, store upkeep) and the stream hub."""
