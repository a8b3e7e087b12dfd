/* A trivial static init: reboot at once, which with -no-reboot ends QEMU.
 * Used by the accelerator probe and as the floor in the boot benchmark. */
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
  reboot(RB_AUTOBOOT);
  return 0;
}
