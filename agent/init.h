/* PID 1 duties: the system at boot, the agent's port, power-off. */
#ifndef VMBOX_INIT_H
#define VMBOX_INIT_H

int init_system(void);
/* The virtio-serial port named vmbox.agent, opened non-blocking; -1 if absent. */
int init_agent_port(void);
void init_power_off(void) __attribute__((noreturn));

#endif
