/* PID 1 duties, when the one file is a container's entrypoint. */
#ifndef ATTUNE_INIT_H
#define ATTUNE_INIT_H

/*
 * Called when this process is PID 1 (and ATTUNE_AGENT_TINI is not `off`). Forks: returns in the
 * child, which goes on to start the agent; the parent stays PID 1 for good: it reaps every
 * process that ends up its child (orphaned grandchildren of actions), forwards every signal to
 * the agent's process group, and exits with the agent's status (128+n when signal n ended it).
 * The parent needs no environment after the fork: it zeroes its initial environment block
 * (`envp`, main's third argument) and becomes non-dumpable, so /proc/1/environ and PID 1's memory
 * never show the agent's credentials to an action.
 */
void become_init(char **envp);

#endif
