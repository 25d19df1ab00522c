# Writes OUTPUT, a .cc defining kiln::api::rest::kOpenApiDocument with the bytes of INPUT.
file(READ ${INPUT} document)
file(WRITE ${OUTPUT} "#include \"api/rest/openapi_document.h\"\nnamespace kiln::api::rest {\nconst std::string_view kOpenApiDocument = R\"kiln_openapi(${document})kiln_openapi\";\n}\n")
