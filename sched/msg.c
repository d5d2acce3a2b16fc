/*
** msg.c: names of the transport's message kinds (transport.h), from the
** one X-macro list so that the enum and the names cannot drift apart.
*/
#include "infsim/transport.h"

const char *infsim_msg_kind_name(infsim_msg_kind k) {
  static const char *const k_names[] = {
#define INFSIM_MSG_NAME_(name) #name,
      INFSIM_MSG_KINDS(INFSIM_MSG_NAME_)
#undef INFSIM_MSG_NAME_
  };
  if ((int)k < 0 || k >= INFSIM_MSG_KIND_COUNT) return "unknown";
  return k_names[k];
}
