/* PID 1 duties, when the one file is a container's entrypoint. */
#ifndef ATTUNE_INIT_H
#define ATTUNE_INIT_H

/*
 * Called when this process is PID 1 (and ATTUNE_AGENT_TINI is not `off`). Forks: returns in the
 * child, which goes on to start the agent; the parent stays PID 1 for good: it reaps every
 * process that ends up its child (orphaned grandchildren of actions), forwards every signal to
 * the agent's process group, and exits with the agent's status (128+n when signal n ended it).
 */
void become_init(void);

#endif
