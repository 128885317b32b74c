"""Small async helpers shared by the wings: the loop's clock (:mod:`.clock`), bare-future
wake-ups (:mod:`.waiters`) and task groups that outlive one block (:mod:`.tasks`)."""
