/* jsoncheck — test helper: exit 0 if every non-empty stdin line is one JSON object (JSON Lines),
 * and, given KEY arguments, the last object has each KEY. Prints the reason on failure. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    static char line[1 << 20];
    cJSON *last = NULL;
    int n = 0;
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == '\n')
            continue;
        cJSON *j = cJSON_Parse(line);
        if (!cJSON_IsObject(j)) {
            fprintf(stderr, "jsoncheck: line %d is not a JSON object: %s", n + 1, line);
            return 1;
        }
        cJSON_Delete(last);
        last = j;
        n++;
    }
    if (!n) {
        fprintf(stderr, "jsoncheck: no JSON on stdin\n");
        return 1;
    }
    for (int i = 1; i < argc; i++)
        if (!cJSON_GetObjectItemCaseSensitive(last, argv[i])) {
            fprintf(stderr, "jsoncheck: key '%s' missing\n", argv[i]);
            return 1;
        }
    cJSON_Delete(last);
    return 0;
}
