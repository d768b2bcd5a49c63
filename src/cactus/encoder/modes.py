"""How the entities of a subset see each other while encoded: the one list of attention modes, with the words users
read (its own module, free of torch, so that the command line declares its options without loading it)."""

ATTENTION_MODES = {
    "nia": "no inter-entity attention: every entity is encoded alone (context-free)",
    "fia": "full inter-entity attention over the subset's concatenated tokens",
    "sia": "scalable inter-entity attention: each entity's tokens also attend to one summary per other entity "
           "(the method's)",
}
