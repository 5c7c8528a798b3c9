/* The HTTP side: GET /api/realtime/events (Server-Sent Events). */
#ifndef RT_API_H
#define RT_API_H

#include "http.h"
#include "hub.h"

void rt_api_register(http_server *srv, rt_hub *hub);

#endif
